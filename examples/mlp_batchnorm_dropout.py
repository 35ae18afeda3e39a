"""An MLP with BatchNorm1d and Dropout on the bundled 8x8 digits.

64 → [Dense → BatchNorm1d → ReLU → Dropout] × 2 → 10, trained with AdamW and a cosine
schedule. BatchNorm normalises each hidden unit over the batch while training and uses its
running statistics at evaluation; Dropout zeroes a random fraction ``p`` of the hidden units
while training and is the identity at evaluation (``fit``'s validation, ``evaluate`` and
``predict`` run the model in evaluation mode). The training set is split once more: the
validation part watches training, and the test set is scored once at the end.

    python examples/mlp_batchnorm_dropout.py --epochs 30
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

import arrayprop as ap
from arrayprop import data


def load(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Train, validation and test parts, each ``(x, y)``; x standardised by the train part."""
    (x_tr, y_tr), (x_te, y_te) = data.load_digits(seed=seed)
    (x_tr, y_tr), (x_va, y_va) = data.train_val_split(
        x_tr, y_tr, val_fraction=0.2, seed=seed, stratify=True
    )
    mean, std = x_tr.mean(axis=0), x_tr.std() + 1e-8

    def scale(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return (scale(x_tr), y_tr), (scale(x_va), y_va), (scale(x_te), y_te)


def build(
    hidden: int = 256, p: float = 0.3, *, seed: int = 0, backend: str | None = None
) -> ap.Sequential:
    """64 → hidden → hidden/2 → 10, each hidden layer Dense → BatchNorm1d → ReLU → Dropout."""
    be = ap.get_backend(backend)
    widths = [64, hidden, hidden // 2]
    layers: list[ap.Layer] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers += [
            ap.Dense(fan_in, fan_out, seed=seed + i, backend=be),
            ap.BatchNorm1d(fan_out, backend=be),
            ap.ReLU(),
            ap.Dropout(p),
        ]
    layers.append(ap.Dense(widths[-1], 10, seed=seed + len(widths), backend=be))
    return ap.Sequential(*layers)


def main(
    *,
    hidden: int = 256,
    p: float = 0.3,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 32,
    backend: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, float]:
    """Train the MLP; return ``val_accuracy`` (validation) and ``accuracy``, ``loss`` (test)."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = load()
    model = build(hidden, p, seed=seed, backend=backend)
    optimizer = ap.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    start = time.perf_counter()
    ap.fit(
        model,
        x_tr,
        y_tr,
        loss="softmax-ce",
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        validation_data=(x_va, y_va),
        schedule=ap.CosineAnnealingLR(optimizer, T_max=epochs),
        progress="lines" if verbose else None,
    )
    val = ap.evaluate(model, x_va, y_va, loss="softmax-ce")
    result = ap.evaluate(model, x_te, y_te, loss="softmax-ce")
    result["val_accuracy"] = val["accuracy"]
    if verbose:
        print(f"trained in {time.perf_counter() - start:.1f} s")
        print(f"validation accuracy {val['accuracy']:.2%}")
        print(f"test loss {result['loss']:.4f}, test accuracy {result['accuracy']:.2%}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--p", type=float, default=0.3, help="dropout probability")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(epochs=args.epochs, hidden=args.hidden, p=args.p, backend=args.backend, seed=args.seed)
