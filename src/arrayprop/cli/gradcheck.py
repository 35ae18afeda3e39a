"""``arrayprop gradcheck``: every layer's and loss's backward against central differences."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from arrayprop import data
from arrayprop.backends import BACKENDS, Backend, get_backend
from arrayprop.nn.activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from arrayprop.nn.containers import Sequential, mlp
from arrayprop.nn.dense import Dense
from arrayprop.nn.flatten import Flatten
from arrayprop.nn.gradcheck import gradcheck
from arrayprop.nn.losses import MSE, RMSE, BinaryCrossEntropy, L2Loss, SoftmaxCrossEntropy
from arrayprop.nn.standardize import Standardize

__all__ = ["GRADCHECK_TOLERANCE", "add_parser", "gradcheck_cases", "run", "run_gradchecks"]

#: Worst relative error ``arrayprop gradcheck`` accepts.
GRADCHECK_TOLERANCE = 1e-6


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``gradcheck`` sub-command to ``sub`` (the result of ``add_subparsers``)."""
    check = sub.add_parser(
        "gradcheck",
        help="finite-difference check of every layer, loss and a deep model",
        description="Compare every layer's and loss's backward() with central differences in "
        f"float64; exit status 1 if any relative error exceeds {GRADCHECK_TOLERANCE:g}.",
    )
    check.add_argument("--backend", choices=BACKENDS, default=None)
    check.add_argument("--device", default=None)
    check.set_defaults(run=run)
    return check


def gradcheck_cases(be: Backend) -> list[tuple[str, Any, Any, Any, Any]]:
    """(name, layer or loss, x, y, loss) for every layer, every loss and three deep models.

    ``be`` is a float64 backend; inputs are drawn from a fixed seed and kept away from the
    kinks of ReLU / LeakyReLU (|z| > 0.05), where a central difference is not a derivative.
    Besides rows (5, 4), layers also see N-D input: Flatten and a Dense applied per position
    take the same values as (5, 2, 2), and a model starting with a Flatten reads them too.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    x = be.asarray(np.where(np.abs(x) < 0.05, 0.5, x))
    labels = rng.integers(0, 3, 5)
    onehot = data.one_hot(labels, 3, dtype=np.float64)
    logits = be.asarray(rng.standard_normal((5, 3)))
    probs = be.asarray(rng.uniform(0.1, 0.9, (5, 3)))
    x3 = be.xp.reshape(x, (5, 2, 2))
    cases: list[tuple[str, Any, Any, Any, Any]] = [
        ("Dense(4, 3)", Dense(4, 3, seed=1, backend=be), x, None, None),
        ("Dense(2, 3) per position", Dense(2, 3, seed=1, backend=be), x3, None, None),
        ("Flatten", Flatten(), x3, None, None),
        (
            "Standardize(4)",
            Standardize(4, rng.standard_normal(4), 0.5 + rng.random(4), backend=be),
            x,
            None,
            None,
        ),
        ("ReLU", ReLU(), x, None, None),
        ("LeakyReLU(0.1)", LeakyReLU(0.1), x, None, None),
        ("Sigmoid", Sigmoid(), x, None, None),
        ("Tanh", Tanh(), x, None, None),
        ("Identity", Identity(), x, None, None),
        ("Softmax", Softmax(), x, None, None),
        ("L2Loss(sum)", L2Loss("sum"), logits, onehot, None),
        ("L2Loss(mean)", L2Loss("mean"), logits, onehot, None),
        ("MSE", MSE(), logits, onehot, None),
        ("RMSE", RMSE(), logits, onehot, None),
        ("BCE(probabilities)", BinaryCrossEntropy(), probs, onehot, None),
        ("BCE(logits)", BinaryCrossEntropy(from_logits=True), logits, onehot, None),
        ("SoftmaxCE(labels)", SoftmaxCrossEntropy(), logits, labels, None),
        ("SoftmaxCE(one-hot)", SoftmaxCrossEntropy(), logits, onehot, None),
    ]
    loss_ce = SoftmaxCrossEntropy()
    for act, loss in (("tanh", loss_ce), ("sigmoid", MSE())):
        model = mlp([4, 8, 7, 6, 3], act, seed=2, backend=be)
        target = labels if isinstance(loss, SoftmaxCrossEntropy) else onehot
        cases.append((f"mlp 4-8-7-6-3 {act} + {loss!r}", model, x, target, loss))
    flat = Sequential(Flatten(), *mlp([4, 8, 3], "tanh", seed=3, backend=be))
    cases.append(("Flatten + mlp 4-8-3 tanh + SoftmaxCrossEntropy()", flat, x3, labels, loss_ce))
    return cases


def run_gradchecks(backend: Any = None, device: Any = None) -> list[tuple[str, float]]:
    """Worst relative error of each :func:`gradcheck_cases` case on a float64 backend."""
    be = get_backend(backend, device=device, dtype="float64")
    results = []
    for name, obj, x, y, loss in gradcheck_cases(be):
        errors = gradcheck(obj, x, y, loss=loss)
        results.append((name, max(errors.values())))
    return results


def run(args: argparse.Namespace) -> int:
    """Run ``arrayprop gradcheck``; exit status 1 when any case exceeds the tolerance."""
    be = get_backend(args.backend, device=args.device, dtype="float64")
    print(f"gradient check on {be} (central differences, tolerance {GRADCHECK_TOLERANCE:g})")
    results = run_gradchecks(be)
    width = max(len(name) for name, _ in results)
    failed = 0
    for name, error in results:
        ok = error <= GRADCHECK_TOLERANCE
        failed += not ok
        print(f"  {name:<{width}}  {error:9.2e}  {'ok' if ok else 'FAIL'}")
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
