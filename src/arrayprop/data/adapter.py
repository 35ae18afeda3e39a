"""The one data boundary of fit, evaluate and predict: check a data set once, place it, batch it.

:func:`prepare` takes host data (NumPy arrays, memmaps, lists) or arrays of the model's backend
and checks them once: one pass on the host, or one device reduction and one device→host read
(the twins of :mod:`arrayprop.validation`). It returns a :class:`DeviceData`, resident on the
device when it fits ``max_device_bytes``, else left on the host and copied to the device in
contiguous chunks of the epoch's order, one copy per chunk and none per step. The training loop
only consumes its batches (:meth:`DeviceData.batches`); evaluation and prediction its chunks
(:meth:`DeviceData.chunks`).

Host data is handled with NumPy; device arrays only through the backend: its ``xp``,
:meth:`~arrayprop.Backend.asarray` and :meth:`~arrayprop.Backend.to_host`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from arrayprop import validation
from arrayprop.backends import Backend, is_host
from arrayprop.errors import (
    BackendMismatchError,
    DataError,
    DTypeError,
    NonFiniteError,
    ShapeError,
)

__all__ = [
    "DeviceData",
    "Expect",
    "check_weights",
    "gather_rows",
    "host_array",
    "is_resident",
    "prepare",
]


@dataclass(frozen=True)
class Expect:
    """What the model takes: the shape checks of :func:`prepare` and their messages.

    The widths are the ones the model declares (``model.in_features``, ``model.out_features``);
    None where it declares none (a model starting with a Flatten, a user's layer), and then that
    width goes unchecked.

    Attributes
    ----------
    features : int or None
        The model's input width: x has shape (n, ..., features). With None, x is (n, ...).
    outputs : int or None
        The model's output width: target rows have shape (n, ..., outputs), or class labels
        0..outputs−1 have shape (n,). With None, target rows (n, ...) are taken as they are
        (the loss compares them with the predictions) and class labels are refused: their
        range cannot be checked.
    first : str
        How messages name the model's first layer (its repr).
    rows_only : str or None
        How messages name the loss when it takes target rows only, never class labels (a
        regression loss, binary cross-entropy); None when labels are fine.
    indices : int or None
        When the first layer takes integer indices (an Embedding, ``takes_indices``): the rows
        of its table, and x must hold integers in [0, indices), kept integer on the device.
        None: x is features, cast to the model's float dtype.
    distributions : str or None
        How messages name the loss when its target rows must be probability distributions
        (softmax cross-entropy: entries >= 0 summing to 1, checked once with the data); None
        when any real rows are fine.
    """

    features: int | None
    outputs: int | None
    first: str
    rows_only: str | None = None
    indices: int | None = None
    distributions: str | None = None


@dataclass
class DeviceData:
    """A checked data set, ready to be consumed in device batches or chunks.

    Attributes
    ----------
    be : Backend
        The model's backend.
    x : array, shape (n, ...)
        On the device in the model's dtype when ``resident``, else the host array.
    y : array, shape (n,) or (n, ...), or None
        int64 class labels (``labels``: a one-hot row is made per batch) or target rows in the
        model's dtype, placed like ``x``; None for predict.
    n : int
        Samples.
    outputs : int or None
        The model's declared output width (the number of classes of labels; never None with
        labels).
    resident : bool
        The whole set is on the device.
    labels : bool
        ``y`` holds class labels.
    row_bytes : int
        Device bytes of one sample: its x row (all its axes after the first) and its label or
        target row.
    budget : int
        ``max_device_bytes``: what the data may take while it is consumed.
    indices : bool
        ``x`` holds integer indices (kept integer), not features in the model's dtype.
    w : array, shape (n,), or None
        Per-sample weights (``fit(..., sample_weight=)``) in the model's dtype, placed like
        ``x``; None without weights.
    """

    be: Backend
    x: Any
    y: Any
    n: int
    outputs: int | None
    resident: bool
    labels: bool
    row_bytes: int
    budget: int
    indices: bool = False
    w: Any = None

    def chunk_rows(self, batch: int) -> int:
        """Rows per device chunk: a multiple of ``batch``, so no batch spans two chunks.

        What the epoch's shuffled order (8 bytes per sample) leaves of the budget, divided by
        three: while chunk k + 1 is read from the host (one copy) and converted onto the device
        (a second one), chunk k is still referenced by the loop, so three chunks can be alive
        at once.
        """
        # An order larger than the whole budget (more rows than budget / 8) would starve the
        # chunks down to one batch, a copy per step: they keep half the budget then, and fit
        # warns that the data exceeds it (order_exceeds_budget).
        order = 8 * self.n
        budget = self.budget - order if order <= self.budget else self.budget // 2
        return max(batch, budget // 3 // self.row_bytes // batch * batch)

    def order_exceeds_budget(self) -> bool:
        """Whether a streamed set's shuffled order (8 bytes per sample) alone takes more than
        ``max_device_bytes``, so that the data of a shuffled epoch exceeds the budget."""
        return not self.resident and 8 * self.n > self.budget

    def batches(
        self, batch: int, order: np.ndarray | None = None, start: int = 0, *, weights: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """Device mini-batches (xb, yb) of ``batch`` rows; the last one holds the remainder.

        Parameters
        ----------
        batch : int
            Rows per batch.
        order : numpy.ndarray of int, shape (n,), optional
            The epoch's host permutation of the samples (None: in order).
        start : int
            Position in ``order`` of the first sample to visit (a resumed epoch).
        weights : bool
            Yield triples (xb, yb, wb), wb the batch's slice of :attr:`w` (None without
            weights).

        Yields
        ------
        xb : array, shape (b, ...)
        yb : array, shape (b,) or (b, ...), or None
        wb : array, shape (b,), or None
            Only with ``weights=True``.
        """
        take = self.be.xp.take
        for xs, ys, ws, perm, lo, hi in self._pieces(order, start, self.chunk_rows(batch)):
            for s in range(lo, hi, batch):
                e = s + batch if s + batch < hi else hi  # in-bounds slices (the standard's rule)
                if perm is None:
                    rows = [None if a is None else a[s:e, ...] for a in (xs, ys, ws)]
                else:
                    ib = perm[s:e]
                    rows = [None if a is None else take(a, ib, axis=0) for a in (xs, ys, ws)]
                yield tuple(rows) if weights else tuple(rows[:2])

    def chunks(self, batch: int) -> Iterator[tuple[Any, Any]]:
        """Device arrays (xs, ys) of consecutive rows that cover the set in order.

        The whole set when it is resident, else :meth:`chunk_rows` rows at a time (the last
        chunk holds the remainder): for forward passes of ``batch`` rows over each.
        """
        # In order from sample 0, every piece is used whole (rows 0 to its length).
        for xs, ys, _, _, _, _ in self._pieces(None, 0, self.chunk_rows(batch)):
            yield xs, ys

    def _pieces(
        self, order: np.ndarray | None, start: int, chunk_rows: int
    ) -> Iterator[tuple[Any, Any, Any, Any, int, int]]:
        """(xs, ys, ws, perm, lo, hi): device arrays and the row range of them to visit.

        Rows lo, lo + B, ... < hi of ``xs``, in the order of the device index array ``perm``
        when it is given (``xp.take``), else as slices.
        """
        be = self.be
        if self.resident:
            perm = None if order is None else be.asarray(order)
            yield self.x, self.y, self.w, perm, start, self.n
            return
        y_dtype = be.xp.int64 if self.labels else be.dtype
        x_dtype = None if self.indices else be.dtype  # None: integers keep their dtype
        for c in range(start, self.n, chunk_rows):
            rows = slice(c, c + chunk_rows) if order is None else order[c : c + chunk_rows]
            # prepare() checked the whole set once: no range scan per chunk and epoch.
            xs = be.asarray(gather_rows(self.x, rows), dtype=x_dtype, check_range=False)
            ys = None
            if self.y is not None:
                ys = be.asarray(gather_rows(self.y, rows), dtype=y_dtype, check_range=False)
            ws = None
            if self.w is not None:
                ws = be.asarray(gather_rows(self.w, rows), dtype=be.dtype, check_range=False)
            yield xs, ys, ws, None, 0, xs.shape[0]


def prepare(
    be: Backend,
    x: Any,
    y: Any,
    expect: Expect,
    *,
    what: str,
    budget: int,
    sample_weight: Any = None,
) -> DeviceData:
    """Check (x, y) once and put them where the loop reads them from; see :func:`arrayprop.fit`.

    Besides NaN and infinity (let through for predict, ``y is None``), the checks find values
    too large for the model's dtype, which the cast to it would make ±inf.

    Parameters
    ----------
    be : Backend
        The model's backend.
    x : array, shape (n, ...)
        Host data (NumPy array, memmap, nested lists) or an array of ``be``. When the model
        declares an input width, the last axis must have it.
    y : array, shape (n,) or (n, ...), or None
        Class labels or target rows, host or device (placed where ``x`` is); None for predict.
    expect : Expect
        What the model takes.
    what : str
        Who asks, for messages: ``"fit"``, ``"evaluate"``, ``"validation_data"``, ...
    budget : int
        ``max_device_bytes``: host data that takes more stays on the host, moved in chunks.
    sample_weight : array, shape (n,), optional
        Per-sample weights, host or device: finite, non-negative, not all zero; placed like
        ``x`` in the model's dtype.

    Returns
    -------
    DeviceData

    Raises
    ------
    ShapeError, DataError, NonFiniteError, LabelError, BackendMismatchError
        Bad data, found before anything is computed.
    """
    xp = be.xp
    cast_to = (be.dtype_name, float(xp.finfo(be.dtype).max))
    itemsize = xp.finfo(be.dtype).bits // 8
    on_device = is_resident(be, x)
    if not on_device:
        x = host_array(x, f"{what}: x")
    _refuse_complex(be, x, f"{what}: x")
    if y is not None:
        if is_resident(be, y) or isinstance(y, np.ndarray):
            _refuse_complex(be, y, f"{what}: y")
        y = _beside_x(be, y, on_device, cast_to, f"{what}: y")
    n = _check_x(x, expect, what)
    x_dtype = be.dtype
    if expect.indices is not None:
        _check_indices(be, x, on_device, expect, what)
        x_dtype = None  # integers keep their dtype
    labels = False
    if y is not None:
        y, labels = _check_y(xp, y, n, expect, what, on_device)
    rows = y is not None and not labels and expect.distributions is not None
    if on_device:
        _check_device(be, x, y, labels, expect.outputs, what, cast_to, rows)
        x = be.asarray(x, dtype=x_dtype, check_range=False)
    else:
        _check_host(x, y, labels, expect.outputs, what, cast_to, budget, rows)
    row_bytes = _row_size(x) * itemsize
    if y is not None:
        row_bytes += 8 if labels else _row_size(y) * itemsize
        if on_device and labels:
            y = xp.astype(y, xp.int64)
        elif on_device:
            y = be.asarray(y, dtype=be.dtype, check_range=False)
        elif n * row_bytes <= budget:
            # Checked above (check_range=False: no second scan).
            x = be.asarray(x, dtype=x_dtype, check_range=False)
            y = be.asarray(y, dtype=xp.int64 if labels else be.dtype, check_range=False)
            on_device = True
    indices = expect.indices is not None
    w = None
    if sample_weight is not None:
        w = check_weights(be, sample_weight, n, what)
        row_bytes += itemsize
        w = be.asarray(w, dtype=be.dtype, check_range=False) if on_device else w
    return DeviceData(be, x, y, n, expect.outputs, on_device, labels, row_bytes, budget, indices, w)


def check_weights(be: Backend, sample_weight: Any, n: int, what: str) -> np.ndarray:
    """``sample_weight`` as a float64 host array (n,), checked: real, finite, non-negative and
    not all zero (one device→host read for device weights: n numbers).

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, DataError
        Naming the first offending weight.
    """
    who = f"{what}: sample_weight"
    w = (
        be.to_host(sample_weight)
        if is_resident(be, sample_weight)
        else host_array(sample_weight, who)
    )
    if tuple(w.shape) != (n,):
        raise ShapeError(f"{who} must have shape ({n},), one weight per sample, got {w.shape}")
    if w.dtype.kind not in "biuf":
        raise DTypeError(f"{who} must be real numbers, got {w.dtype}")
    w = w.astype(np.float64)
    validation.check_finite(w, who)
    if np.any(w < 0):
        i = int(np.argmax(w < 0))
        raise DataError(f"{who} must be non-negative, got {w[i]} at sample {i}")
    if not np.any(w > 0):
        raise DataError(f"{who} must not be all zero (no sample would count)")
    return w


def is_resident(be: Backend, x: Any) -> bool:
    """``x`` is an array already on the model's device (a NumPy memmap counts as host data)."""
    return be.owns(x) and (be.name != "numpy" or type(x) is be.array_type)


def host_array(x: object, what: str) -> np.ndarray:
    """``x`` as a host NumPy array, without copying NumPy arrays (a memmap stays on disk).

    Raises
    ------
    arrayprop.errors.BackendMismatchError
        If ``x`` is an array of a device library (torch, cupy, jax, array-api-strict;
        :func:`arrayprop.backends.is_host`): such an array is never copied behind the user's
        back.
    """
    if isinstance(x, np.ndarray):
        return x
    if not is_host(x):
        mod = type(x).__module__.split(".")[0]
        raise BackendMismatchError(
            f"{what}: got a {mod}.{type(x).__name__}, which is neither host (NumPy) data nor an "
            "array of the model's backend; move it explicitly"
        )
    try:
        return np.asarray(x)
    except ValueError as exc:  # NumPy's "inhomogeneous shape" of a ragged nested list
        raise ShapeError(
            f"{what}: a ragged sequence (rows of different lengths) is not an array; give "
            f"rows of one shape ({exc})"
        ) from None


def gather_rows(x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """``x[rows]`` (rows along the first axis, every other axis whole) as one contiguous
    in-memory array, ready for one device copy.

    ``rows`` is an index array (a chunk of a shuffled order) or a slice. Reading a memmap this
    way touches only the rows of the chunk.
    """
    if isinstance(rows, slice):
        return np.array(x[rows], order="C")  # a copy in memory, also for a memmap
    return np.asarray(np.take(x, rows, axis=0))  # a plain ndarray, not a memmap subclass


# -- the checks, once per data set ------------------------------------------------------------


def _beside_x(be: Backend, y: Any, x_on_device: bool, cast_to: validation.CastTo, what: str) -> Any:
    """``y`` where ``x`` is: on the device when x is there (host labels or targets are copied
    there, range-checked first), else on the host (a device y is copied back)."""
    if x_on_device:
        if is_resident(be, y):
            return y
        y = host_array(y, what)
        if y.ndim:  # be.asarray casts host floats to the model's dtype: look before it does
            validation.check_finite(y, what, cast_to=cast_to, nonfinite_ok=True)
        return be.asarray(y, check_range=False)
    return be.to_host(y) if is_resident(be, y) else host_array(y, what)


def _refuse_complex(be: Backend, a: Any, what: str) -> None:
    """Complex data is refused before any check reads it: every cast to the model's dtype
    would keep its real part without a word."""
    if isinstance(a, np.ndarray):
        complex_ = a.dtype.kind == "c"
    else:
        complex_ = be.xp.isdtype(a.dtype, "complex floating")
    if complex_:
        raise DTypeError(
            f"{what}: got complex data (dtype {a.dtype}); arrayprop trains on real numbers, and "
            "a cast would keep only the real part: pass the real and imaginary parts as "
            "separate features if both matter"
        )


def _row_size(a: Any) -> int:
    """Values per sample of ``a`` (n, ...): the product of its axes after the first."""
    return math.prod(tuple(a.shape)[1:])


def _check_indices(be: Backend, x: Any, on_device: bool, expect: Expect, what: str) -> None:
    """x of a model whose first layer takes indices: integers in [0, expect.indices), checked
    once for the whole set (one device reduction and read when it is on the device), so that
    no training step needs a device sync to check them."""
    if on_device:
        xp = be.xp
        ok = xp.isdtype(x.dtype, "integral") and (
            _row_size(x) * x.shape[0] == 0
            or bool(be.to_host(xp.all((x >= 0) & (x < expect.indices))))
        )
        if ok:
            return
        x = be.to_host(x)
    if x.dtype.kind not in "iu":
        raise DTypeError(
            f"{what}: x must hold integer indices for the model's first layer {expect.first}, "
            f"got {x.dtype}"
        )
    validation.check_indices(x, expect.indices, f"{what}: x for {expect.first}")


def _check_x(x: Any, expect: Expect, what: str) -> int:
    """Samples in ``x``, after checking its shape against the model's declared input width."""
    shape, n_in = tuple(x.shape), expect.features
    if n_in is None:
        if len(shape) < 1:
            raise ShapeError(f"{what}: x must have shape (n, ...), got {shape}")
    elif len(shape) < 2:
        raise ShapeError(f"{what}: x must have shape (n, {n_in}), got {shape}")
    elif shape[-1] != n_in and len(shape) == 2:
        raise ShapeError(
            f"{what}: x has {shape[1]} features per sample but the model's first layer "
            f"{expect.first} expects {n_in}; expected x of shape (n, {n_in}), got {shape}"
        )
    elif shape[-1] != n_in:
        raise ShapeError(
            f"{what}: x has {shape[-1]} features along its last axis but the model's first "
            f"layer {expect.first} expects {n_in}; expected x of shape (n, ..., {n_in}), got "
            f"{shape}"
        )
    if shape[0] == 0:
        raise DataError(f"{what}: x is empty (0 samples)")
    return shape[0]


def _check_y(
    xp: Any, y: Any, n: int, expect: Expect, what: str, on_device: bool
) -> tuple[Any, bool]:
    """``y`` as labels (n,) or target rows (n, ...), and whether it holds labels.

    Target rows must end in the model's declared output width; a model that declares none
    takes them as they are (the loss compares them with its predictions).
    """
    n_out = expect.outputs
    if y.ndim == 0 or y.shape[0] != n:
        raise ShapeError(f"{what}: x has {n} samples but y has shape {tuple(y.shape)}")
    if n_out is None:
        if y.ndim == 1 and expect.rows_only is None:
            raise ShapeError(
                f"{what}: y has shape ({n},) (class labels) but the model declares no output "
                f"width (its last layer has no out_features), so labels cannot be checked; "
                "pass one-hot or target rows of the model's output shape "
                "(arrayprop.data.one_hot)"
            )
        return y, False
    labels = y.ndim == 1 and n_out > 1
    if labels and expect.rows_only is not None:
        raise ShapeError(
            f"{what}: y has shape ({n},) (class labels) but {expect.rows_only} needs targets of "
            f"shape ({n}, {n_out}); one-hot encode them (arrayprop.data.one_hot)"
        )
    if not labels:
        if y.ndim == 1:
            y = xp.reshape(y, (n, 1)) if on_device else y.reshape(n, 1)
        if y.ndim == 2 and tuple(y.shape) != (n, n_out):
            raise ShapeError(
                f"{what}: y must have shape ({n},) (labels) or ({n}, {n_out}) for a model with "
                f"{n_out} outputs, got {tuple(y.shape)}"
            )
        if y.ndim > 2 and y.shape[-1] != n_out:
            raise ShapeError(
                f"{what}: y must have shape ({n}, ..., {n_out}) for a model with {n_out} outputs, "
                f"got {tuple(y.shape)}"
            )
    return y, labels


def _check_host(
    x: np.ndarray,
    y: np.ndarray | None,
    labels: bool,
    n_out: int,
    what: str,
    cast_to: validation.CastTo,
    budget: int,
    rows: bool = False,
) -> None:
    """The checks of host data: one pass over each array, in blocks that fit the budget
    (``rows``: also that every target row is a probability distribution)."""
    predict = y is None
    validation.check_finite(
        x, f"{what}: x", block_rows=_check_rows(budget, x), cast_to=cast_to, nonfinite_ok=predict
    )
    if labels:
        validation.check_class_labels(y, n_out, f"{what}: y")
    elif not predict:
        validation.check_finite(y, f"{what}: y", block_rows=_check_rows(budget, y), cast_to=cast_to)
    if rows:
        validation.check_target_rows(y, f"{what}: y", block_rows=_check_rows(budget, y))


def _check_device(
    be: Backend,
    x: Any,
    y: Any,
    labels: bool,
    n_out: int,
    what: str,
    cast_to: validation.CastTo,
    rows: bool = False,
) -> None:
    """The checks of device arrays, with one device→host read (none when there is nothing to
    check: predict on data already in the model's dtype). When they fail, the host twins name
    the culprit."""
    xp = be.xp
    predict = y is None
    flags = [validation.finite_ok(xp, x, cast_to, nonfinite_ok=predict)]
    if labels:
        flags.append(validation.class_labels_ok(xp, y, n_out, f"{what}: y"))
    elif not predict:
        flags.append(validation.finite_ok(xp, y, cast_to))
    if rows:
        flags.append(validation.target_rows_ok(xp, y))
    flags = [f for f in flags if f is not None]
    if not flags or bool(be.to_host(xp.all(xp.stack(flags)))):
        return
    validation.check_finite(be.to_host(x), f"{what}: x", cast_to=cast_to, nonfinite_ok=predict)
    if labels:
        validation.check_class_labels(be.to_host(y), n_out, f"{what}: y")
    elif not predict:
        validation.check_finite(be.to_host(y), f"{what}: y", cast_to=cast_to)
    if rows:
        validation.check_target_rows(be.to_host(y), f"{what}: y")
    raise NonFiniteError(f"{what}: x or y failed a check on the device")  # pragma: no cover


def _check_rows(budget: int, x: Any) -> int:
    """Rows per block of the host scan, whose mask (1 byte per value) stays well in budget.

    A quarter: the mask of the previous block is still alive while the next one is computed,
    and a scan that also looks for values too large for the model's dtype holds two masks of
    the block at once (three quarters in all).
    """
    width = math.prod(tuple(x.shape)[1:]) or 1
    return max(1, budget // 4 // width)
