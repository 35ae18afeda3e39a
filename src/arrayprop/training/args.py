"""Argument checks shared by :func:`arrayprop.fit`, :func:`~arrayprop.evaluate` and
:func:`~arrayprop.predict`: counts, the model's backend and widths, optimizer, metrics, progress.

Array API only (no array library imported by name).
"""

from __future__ import annotations

import sys
from typing import Any

from arrayprop.backends import Backend
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import MSE, RMSE, L2Loss, Loss
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.registry import get_optimizer
from arrayprop.training.callbacks import EpochLog, ProgressBar
from arrayprop.training.metrics import Accuracy, Metric, get_metric

_DEFAULT_METRICS = ("accuracy",)
_REGRESSION_LOSSES = (MSE, RMSE, L2Loss)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _model_backend(model: Layer, what: str) -> Backend:
    be = getattr(model, "backend", None)
    if be is None:
        raise ValueError(f"{what}: the model has no parameters, so no backend to train on")
    return be


def _dense_layers(model: Layer) -> list[tuple[int, Layer]]:
    """(index, layer) of every layer with a weight matrix, in forward order."""
    layers = list(model.layers) if hasattr(model, "layers") else [model]
    return [(i, layer) for i, layer in enumerate(layers) if hasattr(layer, "in_features")]


def _widths(model: Layer, what: str) -> tuple[int, int, str]:
    dense = _dense_layers(model)
    if not dense:
        raise ValueError(f"{what}: the model has no Dense layer")
    first = dense[0][1]
    return first.in_features, dense[-1][1].out_features, repr(first)


def _get_optimizer(optimizer: str | Optimizer, model: Layer) -> Optimizer:
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


def _get_metrics(metrics: Any, loss: Loss | None) -> list[Metric]:
    if metrics is None:
        return []
    if isinstance(metrics, str | Metric):
        metrics = (metrics,)
    if metrics is _DEFAULT_METRICS and isinstance(loss, _REGRESSION_LOSSES):
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


def _display(progress: Any, epochs: int) -> EpochLog:
    if progress is None:
        return _Quiet(epochs)
    if progress == "bar" or (progress is True and sys.stdout.isatty()):
        return ProgressBar(epochs)
    if progress in (True, False, "lines"):
        return EpochLog(epochs)
    raise ValueError(f"progress must be True, False, None, 'bar' or 'lines', got {progress!r}")
