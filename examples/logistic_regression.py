"""Logistic regression as a one-layer network: p = σ(x w + b), trained with binary cross-entropy.

The model's single output is a logit; ``BinaryCrossEntropy(from_logits=True)`` applies the
sigmoid inside the loss, stably. The data come from
:func:`arrayprop.data.make_logistic_regression` (labels drawn from σ(8 (x·u + c)) for a random
unit vector u), so the learnt w should point along u with a length of about 8.

    python examples/logistic_regression.py --backend array_api_strict
"""

from __future__ import annotations

import argparse

import numpy as np

import arrayprop as ap
from arrayprop import data


def main(
    *,
    n: int = 2000,
    features: int = 2,
    epochs: int = 300,
    lr: float = 0.5,
    backend: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, object]:
    """Fit a Dense(features, 1) layer to binary labels by full-batch gradient descent.

    Returns
    -------
    dict
        ``x`` (n, features) and ``y`` (n,), the data; ``weight`` (features, 1) and ``bias``
        (1,), the learnt logit coefficients (host arrays); the final ``loss`` and ``accuracy``.
    """
    x, y = data.make_logistic_regression(n, features, seed=seed)
    model = ap.Sequential(ap.Dense(features, 1, init="zeros", backend=backend))
    loss = ap.BinaryCrossEntropy(from_logits=True)
    # Full batch: the loss is convex, so plain gradient descent with momentum converges to the
    # maximum-likelihood weights.
    history = ap.fit(
        model,
        x,
        y.astype(np.float32),
        loss=loss,
        optimizer=ap.SGD(model.parameters(), lr=lr, momentum=0.9),
        epochs=epochs,
        batch_size=None,
        progress=None,
    )
    be = model.backend
    weight, bias = be.to_host(model[0].weight.data), be.to_host(model[0].bias.data)
    if verbose:
        direction = weight[:, 0] / np.linalg.norm(weight)
        print(f"loss {history.loss[-1]:.4f}, training accuracy {history.accuracy[-1]:.3f}")
        print(f"learnt w = {np.round(weight[:, 0], 3)}, b = {bias[0]:+.3f}")
        print(f"direction of w: {np.round(direction, 3)} (|w| = {np.linalg.norm(weight):.2f})")
    return {
        "x": x,
        "y": y,
        "weight": weight,
        "bias": bias,
        "loss": history.loss[-1],
        "accuracy": history.accuracy[-1],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(epochs=args.epochs, backend=args.backend, seed=args.seed)
