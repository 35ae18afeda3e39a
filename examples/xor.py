"""XOR: the classic problem a linear model cannot solve and one hidden layer can.

Both models are trained on the same data (:func:`arrayprop.data.make_xor`); the linear one
stays near chance, the 2-16-2 tanh network separates the four blobs.

    python examples/xor.py --backend torch
"""

from __future__ import annotations

import argparse

import arrayprop as ap
from arrayprop import data


def main(
    *,
    n: int = 400,
    hidden: int = 16,
    epochs: int = 100,
    lr: float = 0.05,
    backend: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, float]:
    """Train a linear model and a one-hidden-layer network on XOR.

    Returns
    -------
    dict
        Test accuracy of the ``linear`` model and of the ``hidden`` network.
    """
    x, y = data.make_xor(n, noise=0.15, seed=seed)
    (x_tr, y_tr), (x_te, y_te) = data.train_val_split(x, y, 0.25, seed=seed, stratify=True)
    results = {}
    for name, sizes in (("linear", [2, 2]), ("hidden", [2, hidden, 2])):
        model = ap.mlp(sizes, "tanh", seed=seed, backend=backend)
        ap.fit(
            model,
            x_tr,
            y_tr,
            loss="softmax-ce",
            optimizer=ap.get_optimizer("adam", model.parameters(), lr=lr),
            epochs=epochs,
            batch_size=32,
            seed=seed,
            progress=None,
        )
        results[name] = ap.evaluate(model, x_te, y_te)["accuracy"]
        if verbose:
            print(f"{'-'.join(map(str, sizes)):>8}: test accuracy {results[name]:.3f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(epochs=args.epochs, backend=args.backend, seed=args.seed)
