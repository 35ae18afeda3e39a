"""Vanishing gradients: a deep sigmoid network against the same network with ReLU.

Backpropagation multiplies δ by Wᵀ and by σ'(z) ≤ 1/4 at every sigmoid layer (eq. 4-5), so in
a deep sigmoid stack the weight gradients shrink geometrically towards the input: the first
layers barely learn. ReLU's derivative is 1 where the unit is active, and with He initialisation
the gradient norms stay of the same order through the depth.

``fit`` records ‖∂C/∂W‖ of every Dense layer at the end of each epoch in ``History.grad_norm``;
this script plots them per layer (with matplotlib) or prints them.

    python examples/vanishing_gradients.py --plot gradients.png
"""

from __future__ import annotations

import argparse
import importlib.util

import arrayprop as ap
from arrayprop import data


def main(
    *,
    depth: int = 6,
    width: int = 32,
    epochs: int = 3,
    lr: float = 0.1,
    backend: str | None = None,
    seed: int = 0,
    plot: str | None = None,
    verbose: bool = True,
) -> dict[str, list[float]]:
    """Train a ``depth``-hidden-layer sigmoid MLP and the same with ReLU on the digits.

    Returns
    -------
    dict
        Per activation, the weight-gradient norm of each Dense layer (input layer first) at the
        end of the last epoch.
    """
    (x_tr, y_tr), _ = data.load_digits(seed=seed)
    sizes = [64, *[width] * depth, 10]
    norms: dict[str, list[float]] = {}
    for activation in ("sigmoid", "relu"):
        model = ap.mlp(sizes, activation, seed=seed, backend=backend)
        history = ap.fit(
            model,
            x_tr,
            y_tr,
            loss="softmax-ce",
            optimizer=ap.SGD(model.parameters(), lr=lr),
            epochs=epochs,
            seed=seed,
            progress=None,
        )
        norms[activation] = [float(g) for g in history.grad_norm[-1]]
        if verbose:
            print(f"{activation}: training accuracy {history.accuracy[-1]:.3f}")
            for layer, g in zip(history.layers, norms[activation], strict=True):
                print(f"  {layer:<18} ‖∂C/∂W‖ = {g:.2e}")
    if plot:
        _plot(norms, plot)
        if verbose:
            print(f"wrote {plot}")
    return norms


def _plot(norms: dict[str, list[float]], path: str) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed (pip install 'arrayprop[plot]'): nothing plotted")
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for activation, values in norms.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=activation)
    ax.set_yscale("log")
    ax.set_xlabel("Dense layer (1 = next to the input)")
    ax.set_ylabel("‖∂C/∂W‖ after the last epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--plot", default=None, metavar="PNG")
    args = parser.parse_args()
    main(epochs=args.epochs, depth=args.depth, backend=args.backend, plot=args.plot)
