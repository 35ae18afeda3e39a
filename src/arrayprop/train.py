"""Training: one step (:func:`train_step`), the loop (:func:`fit`), evaluate and predict.

Array API standard only, through ``model.backend.xp``; host data (NumPy arrays, memmaps) is
handled by :mod:`arrayprop.data`. How :func:`fit` keeps the device busy:

- **Data** is checked once, up front (on the host, or with one device reduction for device
  arrays). It moves to the device whole when it fits in ``max_device_bytes``, else in contiguous
  chunks of the epoch's shuffled order, one copy per chunk, never one per step. Batches are
  slices of the device copy, or ``xp.take`` with a device index array (drawn on the host once
  per epoch from a Generator seeded by ``seed``).
- **Numbers**: each step appends its loss (a 0-d device array) and each metric's batch sum to a
  list; these are reduced on the device and read back in **one** device→host copy per progress
  refresh (the tqdm bar: every :data:`REFRESH_SECONDS`) or, without a bar, per epoch.
- **Divergence**: that same read says whether any loss of the window was NaN/inf (and at which
  step: the per-step losses stay on the device until the read) and whether every weight is still
  finite. If not, :class:`~arrayprop.errors.DivergenceError` names the epoch, the step and the
  first layer whose weight gradient is non-finite, and the model gets back the copy of its
  weights taken at the previous read. The granularity is one refresh window: at most
  :data:`REFRESH_SECONDS` of training with the bar, one epoch without it. The optimizer's state
  is not rolled back; a checkpoint file is never written after a divergence.
- **Ctrl-C** (SIGINT, in the main thread) is deferred to the end of the running step: the step
  completes, ``fit`` saves a checkpoint when one is configured and returns the History so far.
  A KeyboardInterrupt raised by code inside a step (a callback, a patched function) ends the run
  the same way; a step it cuts short before ``optimizer.step()`` is simply not counted.
- **Checkpoints** (``checkpoint=path``) hold the weights, the optimizer state, the History, the
  shuffling Generator's state and the position in the epoch, so that ``resume=True`` continues an
  interrupted run to exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import data as _data
from . import kernels
from .backend import Backend
from .callbacks import Callback, EpochLog, History, ProgressBar
from .errors import (
    CheckpointError,
    DataError,
    DivergenceError,
    LabelError,
    NonFiniteError,
    ShapeError,
)
from .layers import Layer
from .losses import (
    MSE,
    RMSE,
    BinaryCrossEntropy,
    L2Loss,
    Loss,
    get_loss,
)
from .metrics import Accuracy, Metric, get_metric
from .optim import Optimizer, get_optimizer
from .schedules import Schedule

__all__ = [
    "DEFAULT_MAX_DEVICE_BYTES",
    "REFRESH_SECONDS",
    "evaluate",
    "fit",
    "predict",
    "train_step",
]

#: Default budget for the device copy of a data set (bytes); larger sets go in chunks.
DEFAULT_MAX_DEVICE_BYTES = 512 * 2**20
#: Seconds between two reads of the running loss while a progress bar is shown.
REFRESH_SECONDS = 0.5
#: Per-step device scalars kept before they are summed on the device (bounds their memory).
WINDOW_STEPS = 1024

_DEFAULT_METRICS = ("accuracy",)
_REGRESSION_LOSSES = (MSE, RMSE, L2Loss)


def train_step(
    model: Layer, loss: Loss, optimizer: Optimizer, x: Any, y: Any, *, keep_grads: bool = False
) -> Any:
    """One gradient-descent step on the mini-batch (x, y).

    Runs the forward pass, the loss and its gradient, the backward pass (which skips ∂C/∂x, not
    needed to train) and ``optimizer.step()``.

    With plain :class:`~arrayprop.optim.SGD` (no momentum, no weight decay) on a backend whose
    kernels fold the update into the weight-gradient GEMM (NumPy with its OpenBLAS,
    :func:`arrayprop.kernels.fused_sgd`), each Dense layer applies W ← W − η Xᵀδ during the
    backward pass as one BLAS call and the weight gradient is never stored (eq. 7a of
    docs/math.md): the weights are the same, but ``.grad`` is None afterwards.
    ``keep_grads=True`` keeps the separate ``optimizer.step()`` and the gradients.

    Parameters
    ----------
    x : array, shape (batch, in_features)
        On the model's backend (host data is copied there first).
    y : array
        Targets in the form the loss takes, e.g. integer labels (batch,).
    keep_grads : bool
        Never fold the update into the backward pass, so every ``Parameter.grad`` is set.

    Returns
    -------
    array, shape ()
        The loss before the update, as a backend scalar: reading it (``float(...)``) is left to
        the caller, so no device→host copy happens here.
    """
    be = model.backend
    if be is not None:
        # Moves host data and casts float data to the model's dtype (on numpy, host data counts
        # as the backend's own and would otherwise reach Dense as float64 for a float32 model).
        x = be.asarray(x)
    pred = model.forward(x)
    value, grad = loss.value_and_grad(pred, y)
    lr = None if keep_grads or be is None else _fused_sgd_lr(model, optimizer, be)
    if lr is None:
        model.backward(grad, inplace=True, input_grad=False)
    else:
        model.backward(grad, inplace=True, input_grad=False, sgd_lr=lr)
    optimizer.step()  # counts the step; with sgd_lr no gradient is left to apply
    return value


def _fused_sgd_lr(model: Layer, optimizer: Optimizer, be: Backend) -> float | None:
    """η when this step may fold plain SGD into the backward pass: the optimizer is plain SGD
    over every parameter of the model, every layer takes ``sgd_lr``, and the backend's kernel
    does it as one in-place GEMM (elsewhere folding would gain nothing)."""
    lr = optimizer.plain_sgd_lr()
    if lr is None or not model.fuses_sgd or not kernels.fused_sgd(be):
        return None
    return lr if optimizer.owns(model.parameters()) else None


# -- arguments -------------------------------------------------------------------------------


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


def _budget(max_device_bytes: int | None) -> int:
    if max_device_bytes is None:
        return DEFAULT_MAX_DEVICE_BYTES
    return _positive_int("max_device_bytes", max_device_bytes)


def _acc_dtype(be: Backend) -> Any:
    """Sums are kept in float64 for float64 models, else float32 (exact counts to 2**24)."""
    xp = be.xp
    return xp.float64 if be.dtype == xp.float64 else xp.float32


# -- data ------------------------------------------------------------------------------------


def _resident(be: Backend, x: Any) -> bool:
    """An array already on the model's device (a NumPy memmap counts as host data)."""
    return be.owns(x) and (be.name != "numpy" or type(x) is be.array_type)


@dataclass
class _Data:
    """A data set ready for the loop: on the device (``resident``) or on the host (chunked).

    ``y`` is int64 class labels (``labels``: a one-hot row is made per batch) or float targets
    of shape (n, outputs) in the model's dtype; ``None`` for predict.
    """

    x: Any
    y: Any
    n: int
    resident: bool
    labels: bool
    row_bytes: int


def _prepare(
    be: Backend,
    model: Layer,
    loss: Loss | None,
    x: Any,
    y: Any,
    what: str,
    budget: int,
) -> _Data:
    """Check (x, y) once and put them where training reads them from; see :func:`fit`."""
    xp = be.xp
    n_in, n_out, first = _widths(model, what)
    on_device = _resident(be, x)
    if not on_device:
        x = _data.host_array(x, f"{what}: x")
    if y is not None:
        if on_device and not _resident(be, y):
            y = be.asarray(_data.host_array(y, f"{what}: y"))
        elif not on_device:
            y = be.to_host(y) if _resident(be, y) else _data.host_array(y, f"{what}: y")
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ShapeError(f"{what}: x must have shape (n, {n_in}), got {shape}")
    if shape[1] != n_in:
        raise ShapeError(
            f"{what}: x has {shape[1]} features per sample but the model's first layer {first} "
            f"expects {n_in}; expected x of shape (n, {n_in}), got {shape}"
        )
    n = shape[0]
    if n == 0:
        raise DataError(f"{what}: x is empty (0 samples)")
    itemsize = xp.finfo(be.dtype).bits // 8
    if y is None:
        if on_device:
            x = be.asarray(x, dtype=be.dtype)  # as for fit and evaluate below
        return _Data(x, None, n, on_device, False, n_in * itemsize)
    if y.ndim == 0 or y.shape[0] != n:
        raise ShapeError(f"{what}: x has {n} samples but y has shape {tuple(y.shape)}")
    labels = y.ndim == 1 and n_out > 1
    if labels and isinstance(loss, (*_REGRESSION_LOSSES, BinaryCrossEntropy)):
        raise ShapeError(
            f"{what}: y has shape ({n},) (class labels) but {loss!r} needs targets of shape "
            f"({n}, {n_out}); one-hot encode them (arrayprop.data.one_hot)"
        )
    if not labels:
        if y.ndim == 1:
            y = xp.reshape(y, (n, 1)) if on_device else y.reshape(n, 1)
        if tuple(y.shape) != (n, n_out):
            raise ShapeError(
                f"{what}: y must have shape ({n},) (labels) or ({n}, {n_out}) for a model with "
                f"{n_out} outputs, got {tuple(y.shape)}"
            )
    if on_device:
        _check_device(be, x, y, labels, n_out, what)
        x = be.asarray(x, dtype=be.dtype)
        y = xp.astype(y, xp.int64) if labels else be.asarray(y, dtype=be.dtype)
    else:
        _data.check_finite(x, f"{what}: x", block_rows=_check_rows(budget, x))
        if labels:
            _data.check_class_labels(y, n_out, f"{what}: y")
        else:
            _data.check_finite(y, f"{what}: y", block_rows=_check_rows(budget, y))
    row_bytes = n_in * itemsize + (8 if labels else n_out * itemsize)
    if not on_device and n * row_bytes <= budget:
        x = be.asarray(x, dtype=be.dtype)
        y = be.asarray(y, dtype=xp.int64 if labels else be.dtype)
        on_device = True
    return _Data(x, y, n, on_device, labels, row_bytes)


def _check_device(be: Backend, x: Any, y: Any, labels: bool, n_out: int, what: str) -> None:
    """The checks of :func:`_prepare` for device arrays, with one device→host read."""
    xp = be.xp
    if labels and not xp.isdtype(y.dtype, "integral"):
        raise LabelError(
            f"{what}: class labels of shape {tuple(y.shape)} must be integers 0..{n_out - 1}, "
            f"got dtype {y.dtype}"
        )
    flags = []
    if xp.isdtype(x.dtype, "real floating"):
        flags.append(xp.all(xp.isfinite(x)))
    if labels:
        flags += [xp.all(y >= 0), xp.all(y < n_out)]
    elif xp.isdtype(y.dtype, "real floating"):
        flags.append(xp.all(xp.isfinite(y)))
    if not flags or bool(be.to_host(xp.all(xp.stack(flags)))):
        return
    # Something is wrong: redo the checks on the host, which name the first bad element.
    _data.check_finite(be.to_host(x), f"{what}: x")
    host_y = be.to_host(y)
    if labels:
        _data.check_class_labels(host_y, n_out, f"{what}: y")
    _data.check_finite(host_y, f"{what}: y")
    raise NonFiniteError(f"{what}: x or y contains NaN or infinity")  # pragma: no cover


def _chunks(
    be: Backend, d: _Data, order: Any, start: int, chunk_rows: int
) -> Iterator[tuple[Any, Any, Any, int, int]]:
    """(xs, ys, perm, lo, hi): arrays on the device and the row range of them to train on.

    Batches are rows lo, lo+B, ... < hi of ``xs`` — in the order of the device index array
    ``perm`` when it is given (``xp.take``), else as slices. ``order`` is the epoch's host
    permutation (None: no shuffling); ``start`` the first sample position of the epoch to visit.
    """
    if d.resident:
        perm = None if order is None else be.asarray(order)
        yield d.x, d.y, perm, start, d.n
        return
    y_dtype = be.xp.int64 if d.labels else be.dtype
    for c in range(start, d.n, chunk_rows):
        rows = slice(c, c + chunk_rows) if order is None else order[c : c + chunk_rows]
        xs = be.asarray(_data.gather_rows(d.x, rows), dtype=be.dtype)
        ys = None if d.y is None else be.asarray(_data.gather_rows(d.y, rows), dtype=y_dtype)
        yield xs, ys, None, 0, xs.shape[0]


def _chunk_rows(d: _Data, batch: int, budget: int) -> int:
    """Rows per device chunk: a multiple of the batch size, so no batch spans two chunks.

    What the epoch's shuffled order (8 bytes per sample) leaves of the budget, divided by
    three: while chunk k + 1 is read from the host (one copy) and converted onto the device (a
    second one), chunk k is still referenced by the loop, so three chunks can be alive at once.
    """
    budget = max(budget - 8 * d.n, 0)
    return max(batch, budget // 3 // d.row_bytes // batch * batch)


def _check_rows(budget: int, x: Any) -> int:
    """Rows per block of the NaN/inf scan, whose mask (1 byte per value) stays well in budget.

    A quarter: the mask of the previous block is still alive while the next one is computed.
    """
    width = math.prod(tuple(x.shape)[1:]) or 1
    return max(1, budget // 4 // width)


# -- evaluation ------------------------------------------------------------------------------


def _forward_all(xp: Any, model: Layer, x: Any, batch: int) -> Any:
    """The model's output for a device array, forward pass by forward pass of ``batch`` rows."""
    n = x.shape[0]
    outs = [model.forward(x[s : min(s + batch, n), ...]) for s in range(0, n, batch)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def _eval_sums(
    be: Backend,
    model: Layer,
    d: _Data,
    loss: Loss | None,
    metrics: list[Metric],
    batch: int,
    budget: int,
) -> Any:
    """Device vector [Σ_batches loss·n_b (if loss), Σ metric_j ...] over the whole set."""
    xp = be.xp
    acc = _acc_dtype(be)
    classes = xp.arange(_widths(model, "evaluate")[1], dtype=xp.int64, device=be.device)
    total = None
    for xs, ys, _, lo, hi in _chunks(be, d, None, 0, _chunk_rows(d, batch, budget)):
        pred = _forward_all(xp, model, xs[lo:hi, ...], batch)
        ys = ys[lo:hi, ...]
        parts = [m.batch_sum(xp, pred, ys, acc) for m in metrics]
        if loss is not None:
            t = xp.astype(ys[:, None] == classes, pred.dtype) if d.labels else ys
            values = []
            for s in range(0, hi - lo, batch):
                e = min(s + batch, hi - lo)
                value, _ = loss.value_and_grad(pred[s:e, ...], t[s:e, ...])
                values.append(value * (e - s))
            parts.insert(0, xp.sum(xp.astype(xp.stack(values), acc)))
        sums = xp.stack(parts) if parts else xp.zeros((0,), dtype=acc, device=be.device)
        total = sums if total is None else total + sums
    return total


def evaluate(
    model: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss | None = None,
    metrics: Sequence[str | Metric] | None = _DEFAULT_METRICS,
    batch_size: int = 256,
    max_device_bytes: int | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on (x, y), computed on the device in batches.

    Parameters
    ----------
    x : array, shape (n, in_features)
        Host data (NumPy, memmap) or an array of the model's backend.
    y : array, shape (n,) or (n, outputs)
        Integer class labels or target rows.
    loss : str or Loss, optional
        Also report ``"loss"``: the batch-size-weighted mean of the per-batch loss values (the
        mean over samples for every loss that averages over its batch).
    metrics : sequence of str or Metric, or None
        Default accuracy (dropped for regression losses unless asked for explicitly).
    batch_size : int
        Samples per forward pass.
    max_device_bytes : int, optional
        Budget for the device copy of host data (default :data:`DEFAULT_MAX_DEVICE_BYTES`).

    Returns
    -------
    dict of str to float
        ``{"loss": ..., "accuracy": ...}``, read from the device once.
    """
    be = _model_backend(model, "evaluate")
    loss = None if loss is None else get_loss(loss)
    ms = _get_metrics(metrics, loss)
    batch = _positive_int("batch_size", batch_size)
    budget = _budget(max_device_bytes)
    d = _prepare(be, model, loss, x, y, "evaluate", budget)
    sums = be.to_host(_eval_sums(be, model, d, loss, ms, batch, budget)).tolist()
    names = (["loss"] if loss is not None else []) + [m.name for m in ms]
    return {name: value / d.n for name, value in zip(names, sums, strict=True)}


def predict(
    model: Layer, x: Any, *, batch_size: int = 256, max_device_bytes: int | None = None
) -> Any:
    """The model's output for ``x``, computed in batches.

    Parameters
    ----------
    x : array, shape (n, in_features)
        Host data (NumPy, memmap; moved to the device in chunks of at most
        ``max_device_bytes``) or an array of the model's backend.

    Returns
    -------
    array, shape (n, outputs)
        On the model's backend (use ``model.backend.to_host`` for a NumPy array).
    """
    be = _model_backend(model, "predict")
    batch = _positive_int("batch_size", batch_size)
    budget = _budget(max_device_bytes)
    d = _prepare(be, model, None, x, None, "predict", budget)
    outs = [
        _forward_all(be.xp, model, xs[lo:hi, ...], batch)
        for xs, _, _, lo, hi in _chunks(be, d, None, 0, _chunk_rows(d, batch, budget))
    ]
    return outs[0] if len(outs) == 1 else be.xp.concat(outs, axis=0)


# -- the training loop -----------------------------------------------------------------------


class _Stop:
    """Set by the SIGINT handler; the loop checks it between steps."""

    requested = False


@contextmanager
def _defer_sigint(stop: _Stop) -> Iterator[None]:
    """Turn a first Ctrl-C into ``stop.requested`` (a second one interrupts at once).

    Only in the main thread and only over Python's default handler; elsewhere the plain
    KeyboardInterrupt path applies.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


class _Window:
    """The per-step device scalars since the last read, and their on-device running totals.

    ``totals`` is the device vector [Σ scaled loss, first non-finite step or −1, Σ metric_j ...]
    (steps counted from the last read).
    """

    def __init__(self, xp: Any, acc: Any, n_metrics: int) -> None:
        self.xp = xp
        self.acc = acc
        self.losses: list[Any] = []
        self.metrics: list[list[Any]] = [[] for _ in range(n_metrics)]
        self.totals: Any = None
        self.steps = 0

    def reduce(self) -> None:
        """Sum the listed scalars into ``totals`` on the device (no host copy)."""
        if not self.losses:
            return
        xp, acc = self.xp, self.acc
        v = xp.astype(xp.stack(self.losses), acc)
        bad = ~xp.isfinite(v)
        first = xp.astype(xp.argmax(xp.astype(bad, xp.int32)), acc) + self.steps
        parts = [xp.sum(v), xp.where(xp.any(bad), first, -1.0)]
        parts += [xp.sum(xp.stack(m)) for m in self.metrics]
        new = xp.stack(parts)
        if self.totals is None:
            self.totals = new
        else:
            t = self.totals
            first_bad = xp.where(t[1:2] >= 0, t[1:2], new[1:2])
            self.totals = xp.concat([t[0:1] + new[0:1], first_bad, t[2:] + new[2:]])
        self.steps += len(self.losses)
        self.losses.clear()
        for m in self.metrics:
            m.clear()


class _Run:
    """The state of one :func:`fit` call."""

    def __init__(
        self,
        model: Layer,
        loss: Loss,
        optimizer: Optimizer,
        metrics: list[Metric],
        train: _Data,
        val: _Data | None,
        batch: int,
        shuffle: bool,
        rng: Any,
        epochs: int,
        budget: int,
        display: EpochLog,
        callbacks: list[Callback],
        checkpoint: Any,
        checkpoint_every: int,
        schedule: Schedule | None,
    ) -> None:
        self.model, self.loss, self.optimizer, self.metrics = model, loss, optimizer, metrics
        self.schedule = schedule
        self.be = be = model.backend
        self.xp = be.xp
        self.acc = _acc_dtype(be)
        self.train, self.val = train, val
        self.batch, self.shuffle, self.rng, self.epochs = batch, shuffle, rng, epochs
        self.budget, self.display, self.callbacks = budget, display, callbacks
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.params = model.parameters()
        self.dense = _dense_layers(model)
        self.steps_per_epoch = -(-train.n // batch)
        self.chunk_rows = _chunk_rows(train, batch, budget)
        self.window = _Window(self.xp, self.acc, len(metrics))
        self.stop = _Stop()
        self.history = History([f"{i}: {layer!r}" for i, layer in self.dense])
        # Position: completed epochs, steps done in the current one, whether that one has
        # begun (its order drawn: the Generator has moved on) and its shuffled order.
        self.epoch_done = 0
        self.step = 0
        self.started = False
        self.order: Any = None
        self._reset_epoch_sums()
        self._snapshot()

    # -- bookkeeping ------------------------------------------------------------------------
    def _reset_epoch_sums(self) -> None:
        self.loss_sum = 0.0  # Σ over steps read so far of loss·B (the last batch: loss·n_b)
        self.metric_sums = [0.0] * len(self.metrics)
        self.window_start = self.step  # step (within the epoch) the window's first entry had
        self.seconds = 0.0

    def _snapshot(self) -> None:
        """Keep a device copy of the weights: what a divergence rolls back to."""
        xp = self.xp
        self.finite_weights = [xp.asarray(p.data, copy=True) for p in self.params]
        self.finite_at = (self.epoch_done + 1, self.step) if self.step else (self.epoch_done, 0)

    def _read(self, extra: Sequence[Any] = ()) -> list[float]:
        """The one device→host copy: window totals, weight finiteness and ``extra`` vectors."""
        xp, acc = self.xp, self.acc
        w = self.window
        w.reduce()
        totals = w.totals
        if totals is None:
            zeros = [0.0, -1.0] + [0.0] * len(self.metrics)
            totals = xp.asarray(zeros, dtype=acc, device=self.be.device)
        finite = xp.stack([xp.all(xp.isfinite(p.data)) for p in self.params])
        ok = xp.reshape(xp.astype(xp.all(finite), acc), (1,))
        host = self.be.to_host(xp.concat([totals, ok, *extra])).tolist()
        steps, w.totals, w.steps = w.steps, None, 0
        first_bad, weights_ok = host[1], host[2 + len(self.metrics)]
        if first_bad >= 0 or weights_ok != 1.0:
            bad_step = self.window_start + (int(first_bad) if first_bad >= 0 else steps - 1)
            self._diverged(bad_step, loss_bad=first_bad >= 0)
        self.loss_sum += host[0] * self.batch
        for j in range(len(self.metrics)):
            self.metric_sums[j] += host[2 + j]
        self.window_start += steps
        self._snapshot()
        return host[3 + len(self.metrics) :]

    def _diverged(self, bad_step: int, loss_bad: bool) -> None:
        xp, be = self.xp, self.be
        culprit = None
        for i, layer in self.dense:
            for p in layer.parameters():
                g = p.grad
                if g is not None and not bool(be.to_host(xp.all(xp.isfinite(g)))):
                    culprit = f"layer {i} {layer!r} ({p.name or 'weight'})"
                    break
            if culprit:
                break
        for p, w in zip(self.params, self.finite_weights, strict=True):
            p.data, p.grad = w, None
        self.display.close()
        epoch = self.epoch_done + 1
        what = "the loss became NaN/inf" if loss_bad else "the weights became NaN/inf"
        where = culprit or "none (the last step's gradients are finite)"
        at_epoch, at_step = self.finite_at
        restored = (
            f"epoch {at_epoch}, step {at_step}" if at_step else f"the end of epoch {at_epoch}"
        )
        if at_epoch == 0:
            restored = "the start of training"
        err = DivergenceError(
            f"training diverged at epoch {epoch}, step {bad_step + 1} of "
            f"{self.steps_per_epoch}: {what} (lr={getattr(self.optimizer, 'lr', '?')}); first "
            f"layer with a non-finite gradient at the last step: {where}. The weights were "
            f"restored to those of {restored} (the last finite read); try a smaller learning "
            "rate"
        )
        err.epoch, err.step, err.layer = epoch, bad_step + 1, culprit
        raise err

    # -- one epoch -----------------------------------------------------------------------------
    def run_epoch(self) -> dict[str, Any]:
        """Train the current epoch from ``self.step`` on; returns its logs."""
        be, xp, acc = self.be, self.xp, self.acc
        model, loss, optimizer, d = self.model, self.loss, self.optimizer, self.train
        epoch = self.epoch_done + 1
        B, n = self.batch, d.n
        if not self.started:
            self.order = self.rng.permutation(n) if self.shuffle and B < n else None
            self._reset_epoch_sums()
            self.started = True
        t0 = time.perf_counter()
        start_samples = min(self.step * B, n)
        self.display.begin(epoch, n, start_samples)
        forward, backward = model.forward, model.backward
        value_and_grad, opt_step = loss.value_and_grad, optimizer.step
        metrics = self.metrics
        losses_append = self.window.losses.append
        metric_lists = self.window.metrics
        window = self.window
        classes = None
        if d.labels:
            classes = xp.arange(_widths(model, "fit")[1], dtype=xp.int64, device=be.device)
        dtype = be.dtype
        take = xp.take
        stop = self.stop
        refreshes = self.display.refreshes
        next_refresh = time.perf_counter() + REFRESH_SECONDS
        done = self.step
        try:
            for xs, ys, perm, lo, hi in _chunks(be, d, self.order, done * B, self.chunk_rows):
                for s in range(lo, hi, B):
                    e = s + B if s + B < hi else hi  # in-bounds slices (the standard's rule)
                    if perm is None:
                        xb, yb = xs[s:e, ...], ys[s:e, ...]
                    else:
                        ib = perm[s:e]
                        xb, yb = take(xs, ib, axis=0), take(ys, ib, axis=0)
                    pred = forward(xb)
                    target = yb if classes is None else xp.astype(yb[:, None] == classes, dtype)
                    value, grad = value_and_grad(pred, target)
                    sums = [m.batch_sum(xp, pred, yb, acc) for m in metrics]
                    backward(grad, inplace=True, input_grad=False)
                    opt_step()
                    if e - s < B:
                        value = value * ((e - s) / B)  # so that B·Σ values = Σ loss·n_b
                    losses_append(value)
                    for lst, v in zip(metric_lists, sums, strict=True):
                        lst.append(v)
                    done += 1
                    if len(window.losses) >= WINDOW_STEPS:
                        window.reduce()
                    if stop.requested:
                        raise KeyboardInterrupt
                    if refreshes and time.perf_counter() >= next_refresh:
                        self.step = done
                        self._read()
                        self.display.update(min(done * B, n), self._running_loss(done))
                        next_refresh = time.perf_counter() + REFRESH_SECONDS
        finally:
            self.step = done
            self.seconds += time.perf_counter() - t0
        return self._end_epoch(epoch, t0, start_samples)

    def _running_loss(self, done: int) -> float:
        return self.loss_sum / max(min(done * self.batch, self.train.n), 1)

    def _end_epoch(self, epoch: int, t0: float, start_samples: int) -> dict[str, Any]:
        xp, acc = self.xp, self.acc
        t_end = time.perf_counter()
        norms = []
        for _, layer in self.dense:
            g = layer.weight.grad
            norms.append(
                xp.asarray(math.nan, dtype=acc, device=self.be.device)
                if g is None
                else xp.sqrt(xp.sum(xp.astype(g, acc) ** 2))
            )
        extra = [xp.stack(norms)] if norms else []
        if self.val is not None:
            vsums = _eval_sums(
                self.be,
                self.model,
                self.val,
                self.loss,
                self.metrics,
                max(self.batch, 256),
                self.budget,
            )
            extra.append(xp.astype(vsums, acc))
        host = self._read(extra)
        seconds = self.seconds + (time.perf_counter() - t_end)
        n = self.train.n
        logs: dict[str, Any] = {"loss": self.loss_sum / n}
        for m, s in zip(self.metrics, self.metric_sums, strict=True):
            logs[m.name] = s / n
        grad_norm = host[: len(norms)]
        if self.val is not None:
            v = host[len(norms) :]
            logs["val_loss"] = v[0] / self.val.n
            for m, s in zip(self.metrics, v[1:], strict=True):
                logs[f"val_{m.name}"] = s / self.val.n
        if hasattr(self.optimizer, "lr"):
            logs["lr"] = float(self.optimizer.lr)
        logs["samples_per_s"] = (n - start_samples) / max(time.perf_counter() - t0, 1e-12)
        logs["time"] = seconds
        logs["grad_norm"] = [None if math.isnan(g) else g for g in grad_norm]
        # The epoch is complete: the position moves to the start of the next one.
        self.epoch_done, self.step, self.started, self.order = epoch, 0, False, None
        self.history.record(epoch, logs)
        self.display.end(epoch, logs)
        return logs

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self) -> None:
        if self.checkpoint is None:
            return
        from . import checkpoint as ckpt

        state = {
            "format": 1,
            "epoch": self.epoch_done,
            "step": self.step,
            "started": self.started,
            "n": self.train.n,
            "batch_size": self.batch,
            "shuffle": self.shuffle,
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "rng": _data.rng_state(self.rng),
            "history": self.history.as_dict(),
            "partial": {
                "loss_sum": self.loss_sum,
                "metric_sums": list(self.metric_sums),
                "seconds": self.seconds,
            },
        }
        extra: dict[str, Any] = {"fit": state}
        if self.started and self.order is not None:
            extra["fit_order"] = self.order
        ckpt.save(self.model, self.checkpoint, optimizer=self.optimizer, extra=extra)

    def restore(self, path: Any) -> None:
        """Continue from the checkpoint at ``path`` (written by :meth:`save`)."""
        from . import checkpoint as ckpt

        loaded = ckpt.load(path, backend=self.be)
        extra = loaded.extra
        state = extra.get("fit")
        if state is None:
            raise CheckpointError(f"{path}: not a checkpoint written by fit(checkpoint=...)")
        src, dst = loaded.model.parameters(), self.params
        shapes = [tuple(p.shape) for p in src], [tuple(p.shape) for p in dst]
        if shapes[0] != shapes[1]:
            raise CheckpointError(
                f"{path}: its model has parameter shapes {shapes[0]}, this one {shapes[1]}"
            )
        same_n = state["n"] == self.train.n
        if (state["started"] and not same_n) or (
            state["step"] and (not same_n or state["batch_size"] != self.batch)
        ):
            raise CheckpointError(
                f"{path}: saved within an epoch of {state['n']} samples in batches of "
                f"{state['batch_size']}; this run has {self.train.n} and {self.batch}, so it "
                "cannot continue that epoch"
            )
        for p, q in zip(dst, src, strict=True):
            p.data = self.be.asarray(q.data, dtype=p.data.dtype)
        ckpt.restore_optimizer(self.optimizer, loaded)
        if self.schedule is not None:
            if state.get("schedule") is None:
                raise CheckpointError(f"{path}: saved without a schedule, this run has one")
            self.schedule.load_state_dict(state["schedule"])
        self.history = History.from_dict(state["history"])
        self.history.interrupted = self.history.stopped_early = False  # this run's to set
        self.rng = _data.rng_from_state(state["rng"])
        self.epoch_done, self.step = int(state["epoch"]), int(state["step"])
        self.started = bool(state["started"])
        order = extra.get("fit_order")
        self.order = None if order is None else _data.host_array(order, "checkpoint order")
        if self.started:
            partial = state["partial"]
            if len(partial["metric_sums"]) != len(self.metrics):
                raise CheckpointError(
                    f"{path}: saved mid-epoch with {len(partial['metric_sums'])} metric(s); this "
                    f"run has {len(self.metrics)} ({[m.name for m in self.metrics]}), so it "
                    "cannot continue that epoch's sums; resume with the same metrics"
                )
            self.loss_sum = float(partial["loss_sum"])
            self.metric_sums = [float(s) for s in partial["metric_sums"]]
            self.seconds = float(partial["seconds"])
            self.window_start = self.step
        self._snapshot()


def fit(
    model: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss,
    optimizer: str | Optimizer,
    epochs: int,
    batch_size: int | None = 32,
    shuffle: bool = True,
    seed: Any = None,
    validation_data: tuple[Any, Any] | None = None,
    metrics: Sequence[str | Metric] | None = _DEFAULT_METRICS,
    callbacks: Iterable[Callback] = (),
    progress: bool | str | None = True,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    max_device_bytes: int | None = None,
    schedule: Schedule | None = None,
) -> History:
    """Train ``model`` on (x, y) by mini-batch gradient descent.

    Parameters
    ----------
    model : Sequential (or another Layer)
        Trained in place, on its own backend.
    x : array, shape (n, in_features)
        Host data (NumPy array or ``numpy.memmap``) or an array of the model's backend.
    y : array, shape (n,) or (n, outputs)
        Integer class labels 0..k−1 (with ``"softmax-ce"``) or target rows; same placement
        rules as ``x``.
    loss : str or Loss
        ``"softmax-ce"``, ``"mse"``, ``"bce"``, ... or an instance.
    optimizer : str or Optimizer
        ``"sgd"`` (default hyperparameters) or an instance built on ``model.parameters()``.
    epochs : int
        Total number of epochs (a resumed run counts the epochs already done).
    batch_size : int or None
        Samples per step: 32 (mini-batch), 1 (stochastic) or None (full batch). The last batch
        of an epoch holds the remainder.
    shuffle : bool
        Visit the samples in a new random order each epoch.
    seed : int or numpy.random.Generator, optional
        Seed of the host Generator that draws the orders.
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch (``val_loss``, ``val_<metric>``).
    metrics : sequence of str or Metric, or None
        Training (and validation) metrics; default accuracy (dropped for regression losses).
    callbacks : iterable of Callback
        See :mod:`arrayprop.callbacks`.
    progress : True, False, None, "bar" or "lines"
        True: a tqdm bar per epoch when stdout is a terminal, else one printed line per epoch;
        False or "lines": one line per epoch; "bar": always the bar; None: silent.
    checkpoint : path, optional
        Save (atomically, through :func:`arrayprop.checkpoint.save`) every ``checkpoint_every``
        epochs, at the end, and when interrupted.
    resume : bool
        Continue from ``checkpoint`` if that file exists (else start afresh).
    max_device_bytes : int, optional
        Budget for the device copy of host data (default :data:`DEFAULT_MAX_DEVICE_BYTES`).
        Larger data sets (a ``numpy.memmap`` bigger than memory) go to the device in chunks of
        the shuffled order, sized so that everything the data takes while training (the chunks
        in flight, their host copies, the NaN/inf scan, the order) stays within the budget.
        The model and its activations are not counted.
    schedule : Schedule, optional
        A learning-rate schedule of ``optimizer`` (:mod:`arrayprop.schedules`), stepped after
        every epoch; its state goes into the checkpoint.

    Returns
    -------
    History
        Per-epoch loss, metrics, validation numbers, samples/s, time, lr and gradient norms.

    Raises
    ------
    ShapeError, DataError, NonFiniteError, LabelError
        Bad data, found before training starts.
    ValueError
        For non-positive ``epochs``, ``batch_size``, ``checkpoint_every``.
    DivergenceError
        When the loss or the weights become NaN/inf (the model keeps its last finite weights).
    """
    be = _model_backend(model, "fit")
    epochs = _positive_int("epochs", epochs)
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
    if batch_size is not None:
        _positive_int("batch_size", batch_size)
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path")
    loss = get_loss(loss)
    optimizer = _get_optimizer(optimizer, model)
    if schedule is not None and getattr(schedule, "optimizer", None) is not optimizer:
        raise ValueError("fit: schedule must be built on the optimizer passed to fit")
    ms = _get_metrics(metrics, loss)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks: {cb!r} is not an arrayprop Callback")
    budget = _budget(max_device_bytes)
    train = _prepare(be, model, loss, x, y, "fit", budget)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        val = _prepare(be, model, loss, *validation_data, "validation_data", budget)
    batch = train.n if batch_size is None else min(batch_size, train.n)
    display = _display(progress, epochs)
    run = _Run(
        model,
        loss,
        optimizer,
        ms,
        train,
        val,
        batch,
        bool(shuffle),
        _data.shuffler(seed),
        epochs,
        budget,
        display,
        callbacks,
        checkpoint,
        checkpoint_every,
        schedule,
    )
    if resume and os.path.exists(checkpoint):
        run.restore(checkpoint)
    model.stop_training = False
    for cb in callbacks:
        cb.set_context(model, optimizer)
        cb.on_train_begin({"epochs": epochs, "samples": train.n, "batch_size": batch})
    try:
        # fit detects a non-finite loss itself (DivergenceError), so the floating-point
        # warnings a diverging step raises on the way (NumPy) would only be noise.
        with _defer_sigint(run.stop), model.backend.float_errors_ignored():
            while run.epoch_done < epochs:
                for cb in callbacks:
                    cb.on_epoch_begin(run.epoch_done + 1)
                logs = run.run_epoch()
                if schedule is not None:
                    schedule.step()
                stop = False
                for cb in callbacks:
                    stop = bool(cb.on_epoch_end(run.epoch_done, logs)) or stop
                stop = stop or bool(getattr(model, "stop_training", False))
                run.history.stopped_early = stop and run.epoch_done < epochs
                ending = stop or run.stop.requested or run.epoch_done == epochs
                if ending or run.epoch_done % checkpoint_every == 0:
                    run.save()
                if stop or run.stop.requested:
                    break
    except KeyboardInterrupt:
        run.history.interrupted = True
        if run.step:
            run._read()  # the partial epoch's sums, and a last divergence check
        run.save()
    finally:
        display.close()
    history = run.history
    history.interrupted = history.interrupted or run.stop.requested
    for cb in callbacks:
        cb.on_train_end(history.last())
    return history
