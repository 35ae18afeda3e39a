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
from arrayprop.nn.layer import Layer, state_backend
from arrayprop.nn.losses import MSE, RMSE, BinaryCrossEntropy, L2Loss, Loss
from arrayprop.nn.parameter import Parameter
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
    "distributed": Options((True, False)),
}


def check_argument(whose: str, name: str, value: Any) -> Any:
    """``value`` of the argument ``name`` of ``whose`` (fit, evaluate, predict), checked against
    :data:`ARGUMENTS` (a ``ValueError`` in the shape of :func:`arrayprop.validation.check`)."""
    return check(whose, name, value, ARGUMENTS[name])


def model_backend(model: Layer, what: str) -> Backend:
    """The backend ``model`` lives on: its own (a :class:`~arrayprop.Sequential` sets one) or,
    for a user's layer holding other layers, that of its first parameter (``ValueError`` when it
    has no parameters)."""
    be = getattr(model, "backend", None)
    if be is None and isinstance(model, Layer):
        be = next((layer.backend for layer in _owners(model) if layer.backend is not None), None)
        if be is None:
            be = state_backend(model)
    if be is None:
        raise ValueError(f"{what}: the model has no parameters, so no backend to train on")
    return be


def _owners(model: Layer) -> list[Layer]:
    """The layers inside ``model`` (itself included) that hold parameters of their own."""
    return [
        layer
        for _, layer in model.named_layers()
        if any(isinstance(v, Parameter) for v in vars(layer).values())
    ]


def describe(layer: Layer) -> str:
    """How messages name a layer: its repr, or its class name when it has no repr of its own
    (a user's layer without ``__repr__``)."""
    if type(layer).__repr__ is object.__repr__:
        return type(layer).__name__
    return repr(layer)


def first_layer(model: Layer) -> Layer:
    """The layer that reads the model's input: for a :class:`~arrayprop.Sequential` its first
    shape-changing layer (past activations), else the model itself."""
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "in_features", None) is not None or not layer.preserves_shape:
            return layer
    return model


def named_weights(model: Layer) -> list[tuple[str, Parameter]]:
    """The model's weights by dotted name: every parameter with two axes or more (the biases
    and other vectors left out), in :meth:`~arrayprop.Layer.named_parameters` order."""
    return [(name, p) for name, p in model.named_parameters() if len(p.shape) >= 2]


def owner_of(model: Layer, name: str) -> Layer:
    """The layer holding the parameter of dotted ``name`` (the model itself for a top-level
    one)."""
    path = name.rpartition(".")[0]
    return dict(model.named_layers()).get(path, model)


def expected_data(model: Layer, loss: Loss | None) -> Expect:
    """What ``model`` (trained or scored with ``loss``) takes as data: the input and output
    widths it declares (``model.in_features`` / ``model.out_features``, None where it declares
    none), and whether class labels are fine (not for regression losses and binary
    cross-entropy), and, for a first layer with ``takes_indices`` (an Embedding), the rows of
    its table: x is then integer indices."""
    rows_only = isinstance(loss, (*REGRESSION_LOSSES, BinaryCrossEntropy))
    first = first_layer(model)
    return Expect(
        getattr(model, "in_features", None),
        getattr(model, "out_features", None),
        describe(first),
        repr(loss) if rows_only else None,
        # A first layer that takes indices (Embedding): x stays integer, checked in range.
        getattr(first, "num_embeddings", None) if getattr(first, "takes_indices", False) else None,
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
