"""Argument checks shared by :func:`arrayprop.fit`, :func:`~arrayprop.evaluate` and
:func:`~arrayprop.predict`: counts, the model's backend and widths, optimizer, metrics, progress.

Constraints on scalar arguments are data (:data:`ARGUMENTS`, checked by
:func:`arrayprop.validation.check`). Array API only (no array library imported by name).
"""

from __future__ import annotations

import sys
from typing import Any

from arrayprop.backends import Backend
from arrayprop.data.adapter import Expect
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import MSE, RMSE, BinaryCrossEntropy, L2Loss, Loss
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.registry import get_optimizer
from arrayprop.training.callbacks import EpochLog, ProgressBar
from arrayprop.training.metrics import Accuracy, Metric, get_metric
from arrayprop.validation import POSITIVE_INT, Options, check

#: The metrics fit and evaluate report unless told otherwise.
DEFAULT_METRICS = ("accuracy",)
#: Losses of real-valued targets: no default accuracy, no class labels.
REGRESSION_LOSSES = (MSE, RMSE, L2Loss)

#: What the scalar arguments of fit, evaluate and predict may be.
ARGUMENTS = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "checkpoint_every": POSITIVE_INT,
    "max_device_bytes": POSITIVE_INT,
    "progress": Options((True, False, None, "bar", "lines")),
}


def check_argument(whose: str, name: str, value: Any) -> Any:
    """``value`` of the argument ``name`` of ``whose`` (fit, evaluate, predict), checked against
    :data:`ARGUMENTS` (a ``ValueError`` in the shape of :func:`arrayprop.validation.check`)."""
    return check(whose, name, value, ARGUMENTS[name])


def model_backend(model: Layer, what: str) -> Backend:
    """The backend ``model`` lives on (``ValueError`` when it has no parameters)."""
    be = getattr(model, "backend", None)
    if be is None:
        raise ValueError(f"{what}: the model has no parameters, so no backend to train on")
    return be


def dense_layers(model: Layer) -> list[tuple[int, Layer]]:
    """(index, layer) of every layer with a weight matrix, in forward order."""
    layers = list(model.layers) if hasattr(model, "layers") else [model]
    return [(i, layer) for i, layer in enumerate(layers) if hasattr(layer, "in_features")]


def expected_data(model: Layer, loss: Loss | None, what: str) -> Expect:
    """What ``model`` (trained or scored with ``loss``) takes as data: widths, and whether class
    labels are fine (not for regression losses and binary cross-entropy)."""
    dense = dense_layers(model)
    if not dense:
        raise ValueError(f"{what}: the model has no Dense layer")
    first = dense[0][1]
    rows_only = isinstance(loss, (*REGRESSION_LOSSES, BinaryCrossEntropy))
    return Expect(
        first.in_features, dense[-1][1].out_features, repr(first), repr(loss) if rows_only else None
    )


def resolve_optimizer(optimizer: str | Optimizer, model: Layer) -> Optimizer:
    """An optimizer of ``model``'s parameters: built from a name, or checked to own them all."""
    params = model.parameters()
    if isinstance(optimizer, str):
        return get_optimizer(optimizer, params)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer or a name, got {type(optimizer).__name__}")
    owned = {id(p) for p in optimizer.params}
    missing = [p.name or repr(p) for p in params if id(p) not in owned]
    if missing:
        raise ValueError(
            f"{optimizer!r} does not update the model's parameters {', '.join(missing)}; build it "
            "from model.parameters()"
        )
    return optimizer


def resolve_metrics(metrics: Any, loss: Loss | None) -> list[Metric]:
    """Metric objects from names or instances (no default accuracy for regression losses)."""
    if metrics is None:
        return []
    if isinstance(metrics, str | Metric):
        metrics = (metrics,)
    if metrics is DEFAULT_METRICS and isinstance(loss, REGRESSION_LOSSES):
        return []  # accuracy means nothing for regression; asked-for metrics are kept
    out = [get_metric(m) for m in metrics]
    if getattr(loss, "from_logits", False):
        # Named accuracies of a logit model: a logit z > 0 is a probability σ(z) > 0.5.
        out = [
            Accuracy(threshold=0.0) if isinstance(m, Accuracy) and isinstance(n, str) else m
            for m, n in zip(out, metrics, strict=True)
        ]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"metrics: duplicate names {names}")
    return out


class _Quiet(EpochLog):
    def end(self, epoch: int, logs: dict[str, Any]) -> None:
        pass


def make_display(progress: Any, epochs: int) -> EpochLog:
    """The epoch display ``progress`` asks for (see :func:`arrayprop.fit`)."""
    progress = check_argument("fit", "progress", progress)
    if progress is None:
        return _Quiet(epochs)
    if progress == "bar" or (progress is True and sys.stdout.isatty()):
        return ProgressBar(epochs)
    return EpochLog(epochs)
