"""Argument checks shared by :func:`arrayprop.fit`, :func:`~arrayprop.evaluate` and
:func:`~arrayprop.predict`: counts, the model's backend and widths, optimizer, metrics, progress.

Constraints on scalar arguments are data (:data:`ARGUMENTS`, checked by
:func:`arrayprop.validation.check`). Array API only (no array library imported by name).
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

from arrayprop.backends import Backend
from arrayprop.data.adapter import Expect
from arrayprop.errors import ArrayPropError, DataError, ShapeError
from arrayprop.nn.activations import Softmax
from arrayprop.nn.containers import Sequential
from arrayprop.nn.conv import Conv2D
from arrayprop.nn.layer import Layer, state_backend
from arrayprop.nn.losses import MSE, RMSE, BinaryCrossEntropy, L2Loss, Loss, SoftmaxCrossEntropy
from arrayprop.nn.parameter import Parameter
from arrayprop.nn.summary import summarize
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.registry import get_optimizer
from arrayprop.training.callbacks import EpochLog, ProgressBar
from arrayprop.training.metrics import Accuracy, Metric, get_metric
from arrayprop.validation import POSITIVE_INT, UNIT_OPEN, Options, check

#: The metrics fit and evaluate report unless told otherwise.
DEFAULT_METRICS = ("accuracy",)
#: Losses of real-valued targets: no default accuracy, no class labels.
REGRESSION_LOSSES = (MSE, RMSE, L2Loss)
#: Losses of class targets: the only ones that get the default accuracy (a user's own loss
#: gets it only when asked for, ``metrics=["accuracy"]``).
CLASSIFICATION_LOSSES = (SoftmaxCrossEntropy, BinaryCrossEntropy)

#: What the scalar arguments of fit, evaluate and predict may be.
ARGUMENTS = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "checkpoint_every": POSITIVE_INT,
    "max_device_bytes": POSITIVE_INT,
    "progress": Options((True, False, None, "bar", "lines")),
    "verbose": Options(("auto", 0, 1, 2)),
    "schedule_interval": Options(("epoch", "step")),
    "validation_split": UNIT_OPEN,
    "distributed": Options((True, False)),
}


def check_argument(whose: str, name: str, value: Any) -> Any:
    """``value`` of the argument ``name`` of ``whose`` (fit, evaluate, predict), checked against
    :data:`ARGUMENTS` (a ``ValueError`` in the shape of :func:`arrayprop.validation.check`)."""
    return check(whose, name, value, ARGUMENTS[name])


def largest_gemm(
    model: Layer, batch: int, sample_shape: tuple[int, ...] | None = None
) -> int | None:
    """Multiply-adds of the model's largest matrix product for batches of ``batch`` rows, or
    None when that is not known.

    A two-axis weight (Dense) gives ``batch`` x in x out. A :class:`~arrayprop.Conv2D`'s GEMM
    scales with the image: ``batch``·H_out·W_out x C·kh·kw x out_channels, counted when
    ``sample_shape`` (one sample's shape) is given and every layer with weights of more than
    two axes is a Conv2D in the model's chain (a Sequential's ``layers``); the output sizes
    come from one zero sample run through the model (:func:`~arrayprop.nn.summary.summarize`).
    Otherwise weights of more axes make it None."""
    shapes = [p.shape for p in model.parameters() if len(p.shape) >= 2]
    if not shapes:
        return None
    if all(len(shape) == 2 for shape in shapes):
        return batch * max(rows * cols for rows, cols in shapes)
    chain = getattr(model, "layers", None)
    if sample_shape is None or not isinstance(chain, list):
        return None
    try:
        rows = summarize(model, tuple(sample_shape)).rows
    except (ArrayPropError, ValueError, TypeError):  # data the model cannot take: fit says so
        return None
    largest = 0
    for layer, (_, _, out_shape, _) in zip(chain, rows, strict=True):
        if isinstance(layer, Conv2D):
            spatial = math.prod(out_shape[2:])
            largest = max(largest, batch * spatial * math.prod(layer.weight.shape))
            continue
        own = [p.shape for p in layer.parameters() if len(p.shape) >= 2]
        if any(len(shape) > 2 for shape in own):
            return None  # a nested model with convolutions, or another kind of kernel
        largest = max([largest, *(batch * rows * cols for rows, cols in own)])
    return largest


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
    its table: x is then integer indices. With softmax cross-entropy, target rows must be
    probability distributions, and a model of one output is refused (``ShapeError``): its
    softmax is 1 whatever the input, so the loss would be 0 and nothing would train."""
    rows_only = isinstance(loss, (*REGRESSION_LOSSES, BinaryCrossEntropy))
    softmax = isinstance(loss, SoftmaxCrossEntropy)
    outputs = getattr(model, "out_features", None)
    if softmax and outputs == 1:
        raise ShapeError(SoftmaxCrossEntropy.one_output_message())
    first = first_layer(model)
    return Expect(
        getattr(model, "in_features", None),
        getattr(model, "out_features", None),
        describe(first),
        repr(loss) if rows_only else None,
        # A first layer that takes indices (Embedding): x stays integer, checked in range.
        getattr(first, "num_embeddings", None) if getattr(first, "takes_indices", False) else None,
        repr(loss) if softmax else None,
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
    if (
        metrics is DEFAULT_METRICS
        and loss is not None
        and not isinstance(loss, CLASSIFICATION_LOSSES)
    ):
        # Accuracy means nothing for regression, and a user's own loss may be one: the default
        # accuracy goes with the class losses only; asked-for metrics are always kept.
        return []
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


#: ``verbose`` (Keras' numbering) as the ``progress`` it stands for.
VERBOSE = {"auto": True, 0: None, 1: "bar", 2: "lines"}


def make_display(progress: Any, epochs: int, verbose: Any = None) -> EpochLog:
    """The epoch display ``progress`` (or Keras-style ``verbose``) asks for (see
    :func:`arrayprop.fit`)."""
    progress = check_argument("fit", "progress", progress)
    if verbose is not None:
        verbose = check_argument("fit", "verbose", verbose)
        if progress is not True:
            raise ValueError(
                f"fit: give progress or verbose, not both (progress={progress!r}, "
                f"verbose={verbose!r})"
            )
        progress = VERBOSE[verbose]
    if progress is None or progress is False:
        return _Quiet(epochs)
    if progress == "bar" or (progress is True and (sys.stdout.isatty() or in_notebook())):
        return ProgressBar(epochs)
    return EpochLog(epochs)


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm.auto draws a widget)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython without a running shell
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


def split_tail(
    x: Any, y: Any, fraction: float, weights: Any = None
) -> tuple[Any, Any, tuple[Any, Any], Any]:
    """(x_train, y_train, (x_val, y_val), weights_train): the last ``fraction`` of the rows held
    out, as Keras' ``validation_split`` does (before any shuffling; slices, so a
    ``numpy.memmap`` or a device array is not copied here); the per-sample ``weights`` of the
    rows kept for training, or None."""
    n, m = _rows(x, "x"), _rows(y, "y")
    if n != m:
        raise ShapeError(f"fit: x has {n} rows but y has {m}")
    keep = math.floor(n * (1.0 - fraction))
    if keep < 1 or keep >= n:
        raise DataError(
            f"fit: validation_split={fraction} of {n} samples leaves "
            f"{keep} for training and {n - keep} for validation; both need at least one"
        )
    head, tail = slice(None, keep), slice(keep, None)
    kept = None if weights is None else _take(weights, head)
    return _take(x, head), _take(y, head), (_take(x, tail), _take(y, tail)), kept


def _take(a: Any, rows: slice) -> Any:
    # Array API indexing names every axis (array-api-strict refuses a bare slice of a matrix).
    return a[rows, ...] if getattr(a, "shape", None) is not None else a[rows]


def _rows(a: Any, name: str) -> int:
    shape = getattr(a, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    try:
        return len(a)
    except TypeError:
        raise ShapeError(f"fit: {name} must be an array of samples (rows), got {a!r}") from None


def warn_double_softmax(model: Layer, loss: Loss) -> None:
    """Warn when a :class:`~arrayprop.Softmax` output layer feeds ``"softmax-ce"``, which
    applies softmax itself: the model would be trained through two softmaxes."""
    last = model
    while isinstance(last, Sequential) and last.layers:
        last = last.layers[-1]
    if isinstance(last, Softmax) and isinstance(loss, SoftmaxCrossEntropy):
        warnings.warn(
            "fit: the model ends in a Softmax layer and the loss is softmax-ce, which applies "
            "softmax itself (softmax twice trains slowly and reports wrong losses); drop the "
            "Softmax layer: softmax-ce takes logits (the probabilities are the softmax of "
            "model.predict(x))",
            UserWarning,
            stacklevel=3,
        )
