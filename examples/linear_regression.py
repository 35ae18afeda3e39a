"""Linear regression as a one-layer network: y = x W + b, trained with the MSE loss.

The data come from :func:`arrayprop.data.make_linear_regression`, which also returns the true
weights; gradient descent on the mean squared error should recover them up to the noise.

    python examples/linear_regression.py --backend torch --epochs 100
"""

from __future__ import annotations

import argparse

import numpy as np

import arrayprop as ap
from arrayprop import data


def main(
    *,
    n: int = 500,
    features: int = 3,
    noise: float = 0.1,
    epochs: int = 50,
    lr: float = 0.05,
    backend: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, np.ndarray]:
    """Fit a Dense(features, 1) layer; return the learnt and the true weights (host arrays).

    Returns
    -------
    dict
        ``weight`` (features, 1), ``bias`` (1,), ``true_weight``, ``true_bias`` and the final
        training ``loss``.
    """
    x, y, true_w, true_b = data.make_linear_regression(n, features, noise=noise, seed=seed)
    model = ap.Sequential(ap.Dense(features, 1, init="zeros", backend=backend))
    history = ap.fit(
        model,
        x,
        y,
        loss="mse",
        optimizer=ap.SGD(model.parameters(), lr=lr),
        epochs=epochs,
        batch_size=32,
        seed=seed,
        progress=None,
    )
    be = model.backend
    dense = model[0]
    weight, bias = be.to_host(dense.weight.data), be.to_host(dense.bias.data)
    if verbose:
        print(f"final training MSE {history.loss[-1]:.5f} (noise variance {noise**2:.5f})")
        for i in range(features):
            print(f"  w[{i}] learnt {weight[i, 0]:+.4f}   true {true_w[i, 0]:+.4f}")
        print(f"  b    learnt {bias[0]:+.4f}   true {true_b[0]:+.4f}")
    return {
        "weight": weight,
        "bias": bias,
        "true_weight": true_w,
        "true_bias": true_b,
        "loss": history.loss[-1],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(epochs=args.epochs, backend=args.backend, seed=args.seed)
