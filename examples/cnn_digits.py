"""A small CNN on the bundled 8x8 digits, its settings chosen on the training set alone.

    Conv2D(1, 16, 3, padding=1) → ReLU → Conv2D(16, 32, 3, padding=1) → ReLU → MaxPool2D(2)
    → Flatten → Dense(512, 64) → ReLU → Dropout(0.5) → Dense(64, 10)

(38,282 parameters), trained with AdamW (lr 3e-3, weight decay 0.01), batch 32, a cosine
schedule and 25 epochs, on the training images plus four copies of them shifted by one pixel
up, down, left and right (:func:`shifted`, host NumPy: five times the data), NumPy's BLAS on one
thread. The images are reshaped to (n, 1, 8, 8) and standardised with the training part's mean
and standard deviation.

How the defaults were chosen: two rounds of selection on the 1,438 training images; the test
set chose nothing.

First round. One stratified 80/20 split of the training images, two seeds, could not tell the
candidates apart (each scored 99.3-100 % on the 288 validation images, one or two images
apart). So the choice was made by 3-fold stratified cross-validation on the training set
(``--select``; :func:`folds`, :func:`cross_validate`): each candidate trained three times on two
folds (958 images) and scored on the third, so every training image is held out once:

    candidate                               held-out errors of 1,438   mean held-out loss
    30 epochs, no augmentation              12 (99.17 %)                0.0300
    one-pixel shifts, 15 epochs              8 (99.44 %)                0.0133   <- chosen
    shifts + BatchNorm2d, 15 epochs         10 (99.30 %)                0.0204

Trained on the whole training set, the chosen settings scored 98.33 % on the test set (6 of 359
wrong), one image short of issue 12's target of 98.5 %; the settings before had scored 97.77 %
(8 wrong).

Second round. Five changes to the first round's choice, each plausibly better, were written
into :data:`CANDIDATES` before anything was run, and cross-validated the same way (same folds,
same seeds; ties would have gone to the lower held-out loss):

    candidate                               held-out errors of 1,438   mean held-out loss
    first round's choice (15 epochs)         8 (99.44 %)                0.0133
    wider convolutions, 32 and 64 filters    8 (99.44 %)                0.0167
    a third conv (64) + MaxPool2D            6 (99.58 %)                0.0214
    diagonal shifts too (nine copies)       10 (99.30 %)                0.0234
    25 epochs                                6 (99.58 %)                0.0140   <- chosen
    dropout 0.3                              7 (99.51 %)                0.0106

(one BLAS thread; 148, 201, 114, 157, 126 and 91 s, 837 s in all, at a load average of 3.5-6
on 2 shared cores). The first round's choice reproduced its figures exactly. The differences
are of one or two images in 1,438, so the ranking is weak evidence, but it is the only
evidence the rule allows: 25 epochs ties the third conv on errors and wins on loss.

Then the chosen settings were trained on the whole training set and the test set was scored
once: 99.16 % (3 of 359 wrong, test loss 0.0725), which meets issue 12's target of 98.5 %. The
gain over the first round's 98.33 % is three images of 359, within what another seed could
move. The test set has now been scored three times in all, once per set of settings: the
settings before the first round (97.77 %), the first round's choice (98.33 %) and the second
round's (99.16 %); a second round was run because the first round's choice missed the target,
and each score came after its choice was made and chose nothing.

With the defaults the script trains once on the 80 % part and prints its validation accuracy
(99.31 %), then trains on the whole training set and scores the test set once: 102 s of
training, 1 min 43 s in all, at a load average of 0.8-2.1 on the 2 shared cores. Rerun after
the NumPy convolution fast path changed its float32 summation order (same settings, nothing
chosen): validation 100.00 %, test 99.16 % again (test loss 0.0648), 52-60 s in all at a load
average of 0.9-1.8.

    python examples/cnn_digits.py             # the defaults
    python examples/cnn_digits.py --epochs 1  # a smoke run
    python examples/cnn_digits.py --select    # rerun the second round (~15 min)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import arrayprop as ap
from arrayprop import data


def load(seed: int = 0, val_fraction: float = 0.2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digits as (n, 1, 8, 8) images: ``train``, ``val`` (a split of train), ``full`` and
    ``test``, each ``(x, y)``, x standardised by the statistics of the part it is trained on."""
    (x_tr, y_tr), (x_te, y_te) = data.load_digits(seed=seed)
    (x_a, y_a), (x_v, y_v) = data.train_val_split(
        x_tr, y_tr, val_fraction=val_fraction, seed=seed, stratify=True
    )

    def images(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return ((x - ref.mean()) / ref.std()).reshape(-1, 1, 8, 8).astype(np.float32)

    return {
        "train": (images(x_a, x_a), y_a),
        "val": (images(x_v, x_a), y_v),
        "full": (images(x_tr, x_tr), y_tr),
        "test": (images(x_te, x_tr), y_te),
    }


def shifted(
    x: np.ndarray, y: np.ndarray, shift: int, *, diagonal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` and, for ``shift`` > 0, copies of the images moved by ``shift`` pixels: four
    (up, down, left, right: five times the data) or, with ``diagonal``, eight (also the four
    diagonal moves: nine times the data). The vacated rows and columns take the image's
    background, the minimum. Host NumPy."""
    if shift == 0:
        return x, y
    background = x.min()
    moves = [(shift, 0), (-shift, 0), (0, shift), (0, -shift)]
    if diagonal:
        moves += [(dy, dx) for dy in (shift, -shift) for dx in (shift, -shift)]
    copies = [x]
    for move in moves:
        moved = x
        for axis, step in zip((2, 3), move, strict=True):
            if step == 0:
                continue
            moved = np.roll(moved, step, axis=axis)
            index = [slice(None)] * 4
            index[axis] = slice(0, step) if step > 0 else slice(step, None)
            moved[tuple(index)] = background
        copies.append(moved)
    return np.concatenate(copies), np.concatenate([y] * len(copies))


def build(
    hidden: int = 64,
    p: float = 0.5,
    *,
    bn: bool = False,
    widths: tuple[int, int] = (16, 32),
    third: int = 0,
    seed: int = 0,
    backend: str | None = None,
) -> ap.Sequential:
    """The CNN of the module docstring, with ``widths`` filters in its two convolutions,
    ``hidden`` units, dropout ``p``; with ``bn``, a BatchNorm2d after each convolution; with
    ``third`` > 0, a second block after the pooling: Conv2D(widths[1], third, 3, padding=1)
    → ReLU → MaxPool2D(2), so the Dense layer sees third x 2 x 2 features."""
    be = ap.get_backend(backend)
    c1, c2 = widths

    def norm(channels: int) -> list[ap.Layer]:
        return [ap.BatchNorm2d(channels, backend=be)] if bn else []

    layers: list[ap.Layer] = [
        ap.Conv2D(1, c1, 3, padding=1, seed=seed, backend=be),
        *norm(c1),
        ap.ReLU(),
        ap.Conv2D(c1, c2, 3, padding=1, seed=seed + 1, backend=be),
        *norm(c2),
        ap.ReLU(),
        ap.MaxPool2D(2),
    ]
    features = c2 * 4 * 4
    if third:
        layers += [
            ap.Conv2D(c2, third, 3, padding=1, seed=seed + 4, backend=be),
            *norm(third),
            ap.ReLU(),
            ap.MaxPool2D(2),
        ]
        features = third * 2 * 2
    return ap.Sequential(
        *layers,
        ap.Flatten(),
        ap.Dense(features, hidden, seed=seed + 2, backend=be),
        ap.ReLU(),
        ap.Dropout(p),
        ap.Dense(hidden, 10, seed=seed + 3, backend=be),
    )


def train(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: int,
    p: float,
    bn: bool,
    shift: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    backend: str | None,
    verbose: bool,
    widths: tuple[int, int] = (16, 32),
    third: int = 0,
    diagonal: bool = False,
) -> ap.Sequential:
    """Build the CNN and fit it to ``(x, y)`` (with its shifted copies, see :func:`shifted`)
    with AdamW and a cosine schedule, NumPy's BLAS on one thread (its products are narrow:
    one thread measured 5-30 times faster than two on a shared machine)."""
    x, y = shifted(x, y, shift, diagonal=diagonal)
    model = build(hidden, p, bn=bn, widths=widths, third=third, seed=seed, backend=backend)
    optimizer = ap.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        schedule=ap.CosineAnnealingLR(optimizer, T_max=epochs),
        progress="lines" if verbose else None,
        blas_threads=1,
    )
    return model


#: The candidates of ``--select``: the first round's choice (:data:`BASE`) and changes to it,
#: each fixed before the second round's cross-validation was run. The fifth (25 epochs) won;
#: :func:`main`'s defaults are :data:`BASE` with that change.
CANDIDATES: tuple[dict, ...] = (
    {},
    {"widths": (32, 64)},  # wider convolutions
    {"third": 64},  # a second block: Conv2D(32, 64) → ReLU → MaxPool2D on the 4x4 maps
    {"diagonal": True},  # the four diagonal one-pixel shifts too: nine copies
    {"epochs": 25},  # longer cosine schedule
    {"p": 0.3},  # less dropout (the shifts regularise already)
)
BASE = dict(
    hidden=64,
    p=0.5,
    bn=False,
    widths=(16, 32),
    third=0,
    shift=1,
    diagonal=False,
    epochs=15,
    lr=3e-3,
    weight_decay=0.01,
)


def folds(y: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint, stratified index sets covering ``range(len(y))``."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(k)]
    for label in np.unique(y):
        index = rng.permutation(np.flatnonzero(y == label))
        for i, chunk in enumerate(np.array_split(index, k)):
            parts[(i + label) % k].extend(chunk.tolist())
    return [np.sort(np.asarray(p)) for p in parts]


def cross_validate(
    settings: dict, *, k: int = 3, seed: int = 0, backend: str | None = None
) -> dict[str, float]:
    """``k``-fold cross-validation on the training set only (the test set is never read):
    train on k − 1 folds, score the held-out fold, for each fold. Returns the errors summed
    over the folds (every training image is held out once) and the mean held-out loss."""
    (x_tr, y_tr), _ = data.load_digits(seed=seed)
    errors, losses = 0, []
    for held in folds(y_tr, k, seed):
        rest = np.setdiff1d(np.arange(len(y_tr)), held)
        x_a, x_v = x_tr[rest], x_tr[held]

        def images(x: np.ndarray, ref: np.ndarray = x_a) -> np.ndarray:
            return ((x - ref.mean()) / ref.std()).reshape(-1, 1, 8, 8).astype(np.float32)

        model = train(
            images(x_a), y_tr[rest], batch_size=32, seed=seed, backend=backend, verbose=False,
            **settings,
        )  # fmt: skip
        r = ap.evaluate(model, images(x_v), y_tr[held], loss="softmax-ce")
        errors += round((1 - r["accuracy"]) * len(held))
        losses.append(r["loss"])
    return {"errors": errors, "n": len(y_tr), "loss": float(np.mean(losses))}


def select(*, k: int = 3, backend: str | None = None) -> dict:
    """Cross-validate each of :data:`CANDIDATES` and print the table of the docstring; returns
    the settings with the fewest held-out errors (ties: the lower mean held-out loss)."""
    best = None
    for change in CANDIDATES:
        settings = {**BASE, **change}
        start = time.perf_counter()
        r = cross_validate(settings, k=k, backend=backend)
        print(
            f"{change or 'first round'}: {r['errors']} of {r['n']} wrong "
            f"({1 - r['errors'] / r['n']:.2%}), mean held-out loss {r['loss']:.4f} "
            f"[{time.perf_counter() - start:.0f} s, load average "
            f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}]",
            flush=True,
        )
        key = (r["errors"], r["loss"])
        if best is None or key < best[0]:
            best = (key, settings)
    print(f"chosen: {best[1]}")
    return best[1]


def main(
    *,
    hidden: int = 64,
    p: float = 0.5,
    bn: bool = False,
    shift: int = 1,
    epochs: int = 25,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    batch_size: int = 32,
    validate: bool = True,
    backend: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, float]:
    """Train on the training part and score the validation part (``validate``), then train on
    the whole training set and score the test set once.

    Returns
    -------
    dict
        ``loss`` and ``accuracy`` on the test set; ``val_accuracy`` (with ``validate``).
    """
    parts = load(seed)
    settings = dict(
        hidden=hidden,
        p=p,
        bn=bn,
        shift=shift,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
        backend=backend,
        verbose=verbose,
    )
    result: dict[str, float] = {}
    start = time.perf_counter()
    if validate:
        model = train(*parts["train"], **settings)
        result["val_accuracy"] = ap.evaluate(model, *parts["val"], loss="softmax-ce")["accuracy"]
        if verbose:
            print(f"validation accuracy {result['val_accuracy']:.2%}")
    model = train(*parts["full"], **settings)
    result.update(ap.evaluate(model, *parts["test"], loss="softmax-ce"))
    if verbose:
        print(f"trained in {time.perf_counter() - start:.1f} s")
        print(f"test loss {result['loss']:.4f}, test accuracy {result['accuracy']:.2%}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument(
        "--shift", type=int, default=1, help="augment by shifts of this many pixels"
    )
    parser.add_argument("--bn", action="store_true", help="BatchNorm2d after each convolution")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--p", type=float, default=0.5, help="dropout probability")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-validate", dest="validate", action="store_false", help="skip the validation run"
    )
    parser.add_argument(
        "--select",
        action="store_true",
        help="rerun the selection: 3-fold cross-validation of the candidates on the training set",
    )
    args = parser.parse_args()
    if args.select:
        select(backend=args.backend)
        raise SystemExit(0)
    main(
        epochs=args.epochs,
        shift=args.shift,
        bn=args.bn,
        hidden=args.hidden,
        p=args.p,
        lr=args.lr,
        seed=args.seed,
        validate=args.validate,
        backend=args.backend,
    )
