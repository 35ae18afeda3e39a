"""Feeding data to the device for :mod:`arrayprop.train`: check it once, then put it there.

A data set is checked once, up front, and moved to the device whole when it fits in the budget,
else in contiguous chunks of the epoch's shuffled order (:func:`_chunks`); evaluation runs the
model over it batch by batch and sums on the device (:func:`_eval_sums`). See the module
docstring of :mod:`arrayprop.train`. Array API only; host data goes through
:mod:`arrayprop.data`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from arrayprop import data as _data
from arrayprop.backends import Backend
from arrayprop.errors import DataError, LabelError, NonFiniteError, ShapeError
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import BinaryCrossEntropy, Loss
from arrayprop.training.args import _REGRESSION_LOSSES, _widths
from arrayprop.training.metrics import Metric


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
    """Check (x, y) once and put them where training reads them from; see :func:`arrayprop.fit`.

    Besides NaN/inf (not looked for by predict, ``y is None``), the checks find values too large
    for the model's dtype, which the cast to it would make ±inf.
    """
    xp = be.xp
    n_in, n_out, first = _widths(model, what)
    cast_to = (be.dtype_name, float(xp.finfo(be.dtype).max))
    on_device = _resident(be, x)
    if not on_device:
        x = _data.host_array(x, f"{what}: x")
    if y is not None:
        if on_device and not _resident(be, y):
            y = _data.host_array(y, f"{what}: y")
            if y.ndim:  # be.asarray casts host floats to the model's dtype: look before it does
                _data.check_finite(y, f"{what}: y", cast_to=cast_to, nonfinite_ok=True)
            y = be.asarray(y, check_range=False)
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
            _check_device(be, x, None, False, n_out, what, cast_to)
            x = be.asarray(x, dtype=be.dtype, check_range=False)  # as for fit and evaluate below
        else:
            rows = _check_rows(budget, x)
            _data.check_finite(x, f"{what}: x", block_rows=rows, cast_to=cast_to, nonfinite_ok=True)
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
        _check_device(be, x, y, labels, n_out, what, cast_to)
        x = be.asarray(x, dtype=be.dtype, check_range=False)
        y = xp.astype(y, xp.int64) if labels else be.asarray(y, dtype=be.dtype, check_range=False)
    else:
        _data.check_finite(x, f"{what}: x", block_rows=_check_rows(budget, x), cast_to=cast_to)
        if labels:
            _data.check_class_labels(y, n_out, f"{what}: y")
        else:
            rows = _check_rows(budget, y)
            _data.check_finite(y, f"{what}: y", block_rows=rows, cast_to=cast_to)
    row_bytes = n_in * itemsize + (8 if labels else n_out * itemsize)
    if not on_device and n * row_bytes <= budget:
        # Checked above (check_range=False: no second scan).
        x = be.asarray(x, dtype=be.dtype, check_range=False)
        y = be.asarray(y, dtype=xp.int64 if labels else be.dtype, check_range=False)
        on_device = True
    return _Data(x, y, n, on_device, labels, row_bytes)


def _check_device(
    be: Backend,
    x: Any,
    y: Any,
    labels: bool,
    n_out: int,
    what: str,
    cast_to: tuple[str, float],
) -> None:
    """The checks of :func:`_prepare` for device arrays, with one device→host read (none when
    there is nothing to check: predict on data already in the model's dtype)."""
    xp = be.xp
    if labels and not xp.isdtype(y.dtype, "integral"):
        raise LabelError(
            f"{what}: class labels of shape {tuple(y.shape)} must be integers 0..{n_out - 1}, "
            f"got dtype {y.dtype}"
        )
    predict = y is None
    flags = [_fits(xp, x, cast_to[1], nonfinite_ok=predict)]
    if labels:
        flags += [xp.all(y >= 0), xp.all(y < n_out)]
    elif not predict:
        flags.append(_fits(xp, y, cast_to[1], nonfinite_ok=False))
    flags = [f for f in flags if f is not None]
    if not flags or bool(be.to_host(xp.all(xp.stack(flags)))):
        return
    # Something is wrong: redo the checks on the host, which name the first bad element.
    _data.check_finite(be.to_host(x), f"{what}: x", cast_to=cast_to, nonfinite_ok=predict)
    host_y = be.to_host(y)
    if labels:
        _data.check_class_labels(host_y, n_out, f"{what}: y")
    _data.check_finite(host_y, f"{what}: y", cast_to=cast_to)
    raise NonFiniteError(f"{what}: x or y contains NaN or infinity")  # pragma: no cover


def _fits(xp: Any, a: Any, largest: float, *, nonfinite_ok: bool) -> Any:
    """0-d device bool: ``a`` is finite (unless ``nonfinite_ok``) and holds nothing that the cast
    to the model's dtype, whose largest value is ``largest``, would make ±inf; None when there
    is nothing to check (no reduction, so no pass over data already in the model's dtype)."""
    floating = xp.isdtype(a.dtype, "real floating")
    if floating:
        top = float(xp.finfo(a.dtype).max)
    elif xp.isdtype(a.dtype, "integral"):
        top = float(xp.iinfo(a.dtype).max)
    else:
        return None
    if top <= largest:
        return None if nonfinite_ok or not floating else xp.all(xp.isfinite(a))
    # Comparisons (false for NaN and ±inf) rather than abs(): no float copy of ``a``, and no
    # wrap-around of abs(INT_MIN); integer data is compared with an integer, as the standard
    # asks of Python scalars.
    bound = largest if floating else math.floor(largest)
    inside = (a >= -bound) & (a <= bound)
    if nonfinite_ok and floating:
        inside = inside | ~xp.isfinite(a)
    return xp.all(inside)


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
        # _prepare checked the whole set once before training: no range scan per chunk and epoch.
        xs = be.asarray(_data.gather_rows(d.x, rows), dtype=be.dtype, check_range=False)
        ys = (
            None
            if d.y is None
            else be.asarray(_data.gather_rows(d.y, rows), dtype=y_dtype, check_range=False)
        )
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

    A quarter: the mask of the previous block is still alive while the next one is computed,
    and a scan that also looks for values too large for the model's dtype holds two masks of
    the block at once (three quarters in all).
    """
    width = math.prod(tuple(x.shape)[1:]) or 1
    return max(1, budget // 4 // width)


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
