"""Constraints on arguments, as data, and the checks of data sets, as host/device twins.

A constraint says what a value may be (:class:`Interval`, :class:`Options`); :func:`check`
tests a value against it and raises ``ValueError`` with the same shape everywhere::

    Adam: lr must be a finite number > 0, got -1.0
    <whose>: <what> must be <allowed>, got <value>

Callers keep their constraints as module-level data (``LR = Interval(float, 0, None,
closed="neither")``), so the rules can be read, tested and listed without running the code that
uses them. See docs/architecture.md.

The data checks — finiteness and the range of the cast to the model's dtype
(:func:`check_finite` / :func:`finite_ok`), class labels (:func:`check_class_labels` /
:func:`class_labels_ok`) — come as twins: a host version (NumPy) that names the first bad
element, and a device version (Array API) that reduces to one 0-d bool. This module imports
NumPy and :mod:`arrayprop.errors` only, so every layer of the package can use it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from arrayprop.errors import DataError, LabelError, NonFiniteError

__all__ = [
    "CHECK_BLOCK_ROWS",
    "NON_NEGATIVE",
    "POSITIVE",
    "POSITIVE_INT",
    "UNIT_OPEN",
    "CastTo",
    "Interval",
    "Options",
    "cast_limit",
    "check",
    "check_class_labels",
    "check_finite",
    "check_indices",
    "check_target_rows",
    "class_labels_ok",
    "finite_ok",
    "format_index",
    "row_sum_tolerance",
    "target_rows_ok",
]


@dataclass(frozen=True)
class Interval:
    """Real numbers (``kind=float``) or integers (``kind=int``) between ``low`` and ``high``.

    ``None`` for a bound means unbounded on that side; ``closed`` says which bounds belong to the
    interval: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``. Floats must be finite; bools
    are never numbers here (``True`` is no learning rate).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def convert(self, value: Any) -> Any:
        """``value`` as ``kind``, or raise ``TypeError`` / ``ValueError`` when it is not one."""
        if isinstance(value, bool) or isinstance(value, str):
            raise TypeError
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                raise TypeError
            return int(value)
        if not isinstance(value, numbers.Real):
            raise TypeError
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        return value

    def contains(self, value: Any) -> bool:
        low_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        high_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return low_ok and high_ok

    def describe(self) -> str:
        noun = "an int" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{noun} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            op = ">=" if self.closed in ("both", "left") else ">"
            return f"{noun} {op} {_fmt(self.low)}"
        if self.high is not None:
            op = "<=" if self.closed in ("both", "right") else "<"
            return f"{noun} {op} {_fmt(self.high)}"
        return noun


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (names of losses, reductions, modes, ...)."""

    values: tuple[Any, ...]

    def convert(self, value: Any) -> Any:
        return value

    def contains(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:  # an unhashable or incomparable value
            return False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


#: An int >= 1: epochs, batch sizes, step counts.
POSITIVE_INT = Interval(int, 1, None)
#: A finite number > 0: learning rates, norms, scales.
POSITIVE = Interval(float, 0, None, closed="neither")
#: A finite number >= 0: weight decay, momentum, epsilons that may be 0.
NON_NEGATIVE = Interval(float, 0, None)
#: A fraction strictly between 0 and 1: split sizes.
UNIT_OPEN = Interval(float, 0, 1, closed="neither")


def check(whose: str, what: str, value: Any, constraint: Interval | Options) -> Any:
    """Return ``value`` (converted to the constraint's kind) or raise ``ValueError``.

    The message reads ``"{whose}: {what} must be {allowed}, got {value!r}"``; ``whose`` may be
    empty for a function's own argument (``"epochs must be an int >= 1, got 0"``).
    """
    try:
        converted = constraint.convert(value)
        ok = constraint.contains(converted)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        prefix = f"{whose}: " if whose else ""
        raise ValueError(f"{prefix}{what} must be {constraint.describe()}, got {value!r}")
    return converted


# -- data checks: host and device twins ----------------------------------------------------------
#
# Each data check comes twice, and the two agree on what they accept. The host version (NumPy)
# raises naming the first bad element; the device version (Array API, for arrays of the model's
# backend) only reduces to a 0-d bool, so that every check of a data set costs one device→host
# read. When that flag is False the caller copies the array to the host, where the host version
# names the culprit.

#: Rows per block when scanning host data for NaN / infinity (bounds the temporary memory).
CHECK_BLOCK_ROWS = 65536

#: The dtype data is about to be cast to: its name and its largest finite value.
CastTo = tuple[str, float]


def cast_limit(source_max: float | None, cast_to: CastTo | None) -> float | None:
    """The magnitude beyond which the cast to ``cast_to`` makes a value ±inf, when data of a dtype
    whose largest value is ``source_max`` can hold such values; else None (nothing to look for:
    data already in the target dtype, or integers that fit, costs no range scan)."""
    if cast_to is None or source_max is None:
        return None
    return cast_to[1] if source_max > cast_to[1] else None


def _host_max(dtype: np.dtype) -> float | None:
    """Largest value of a NumPy dtype; None for bool (0/1) and complex (refused by the cast)."""
    if dtype.kind == "f":
        return float(np.finfo(dtype).max)
    if dtype.kind in "iu":
        return float(np.iinfo(dtype).max)
    return None


def _device_max(xp: Any, dtype: Any) -> float | None:
    """Largest value of an Array API dtype, as :func:`_host_max`."""
    if xp.isdtype(dtype, "real floating"):
        return float(xp.finfo(dtype).max)
    if xp.isdtype(dtype, "integral"):
        return float(xp.iinfo(dtype).max)
    return None


def check_finite(
    x: np.ndarray,
    what: str,
    *,
    block_rows: int = CHECK_BLOCK_ROWS,
    cast_to: CastTo | None = None,
    nonfinite_ok: bool = False,
) -> None:
    """Raise :class:`~arrayprop.errors.NonFiniteError` naming the first NaN / infinity in ``x``,
    or the first value that the cast to the model's dtype (``cast_to``) would make infinite.

    The host twin of :func:`finite_ok`. Scans ``block_rows`` rows at a time, so a memmap larger
    than memory is checked in one pass with a bounded temporary. Integer and boolean data are
    always finite.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, ...)
        The data.
    what : str
        How the message names ``x``, e.g. ``"fit: x"``.
    block_rows : int
        Rows per block of the scan.
    cast_to : (str, float), optional
        Name and largest finite value of the dtype ``x`` is about to be cast to (the model's):
        a value of larger magnitude would become ±inf in that cast. Looked for in the same pass,
        and only when ``x``'s dtype can hold such values (:func:`cast_limit`), so data already in
        the model's dtype costs nothing more.
    nonfinite_ok : bool
        Let NaN and infinity through; look only for values the cast would make infinite.
    """
    limit = cast_limit(_host_max(x.dtype), cast_to)
    floating = x.dtype.kind in "fc"
    if limit is None and (nonfinite_ok or not floating):
        return
    for start in range(0, x.shape[0], block_rows):
        block = np.asarray(x[start : start + block_rows])
        if limit is None:
            bad = ~np.isfinite(block)
        else:
            # Two comparisons rather than abs(): masks of one byte per value, no float copy of
            # the block, and no wrap-around of abs(INT_MIN). ±inf lands in ``bad`` here.
            bad = block > limit
            bad |= block < -limit
            if floating:
                if nonfinite_ok:
                    bad &= np.isfinite(block)
                else:
                    bad |= np.isnan(block)
        if bad.any():
            pos = np.argwhere(bad)[0]
            value = block[tuple(pos)]
            pos[0] += start
            if limit is not None and np.isfinite(value):
                raise NonFiniteError(_overflow_message(what, value, format_index(pos), cast_to))
            raise NonFiniteError(
                f"{what} contains {value} at index {format_index(pos)}; NaN and infinity cannot "
                "be trained on (clean or impute the data first)"
            )


def finite_ok(xp: Any, a: Any, cast_to: CastTo | None = None, *, nonfinite_ok: bool = False) -> Any:
    """0-d device bool: ``a`` passes :func:`check_finite` (its device twin).

    True when ``a`` is finite (unless ``nonfinite_ok``) and holds nothing that the cast to
    ``cast_to`` would make ±inf. None when there is nothing to check: no reduction, so no pass
    over data already in the model's dtype, nor over integer data that fits.

    Parameters
    ----------
    xp : namespace
        The Array API namespace of ``a``.
    a : array, shape (n, ...)
        Real floating, integer or boolean data on the device.
    cast_to, nonfinite_ok
        As for :func:`check_finite`.

    Returns
    -------
    array, shape (), bool; or None
    """
    floating = xp.isdtype(a.dtype, "real floating")
    limit = cast_limit(_device_max(xp, a.dtype), cast_to)
    if limit is None:
        return None if nonfinite_ok or not floating else xp.all(xp.isfinite(a))
    # Comparisons (false for NaN and ±inf) rather than abs(): no float copy of ``a``, and no
    # wrap-around of abs(INT_MIN); integer data is compared with an integer, as the standard
    # asks of Python scalars (and unsigned data with no negative one).
    bound = limit if floating else math.floor(limit)
    inside = a <= bound
    if not xp.isdtype(a.dtype, "unsigned integer"):
        inside = inside & (a >= -bound)
    if nonfinite_ok and floating:
        inside = inside | ~xp.isfinite(a)
    return xp.all(inside)


def _overflow_message(what: str, value: object, index: str, cast_to: CastTo) -> str:
    name, largest = cast_to
    wider = " or use a float64 model" if name != "float64" else ""
    return (
        f"{what} contains {value} at index {index}, whose magnitude {abs(value)} exceeds "
        f"{largest:.8g}, the largest value of the model's dtype {name}: the cast to {name} "
        f"would make it {'-' if value < 0 else ''}inf. Scale the data (e.g. "
        f"arrayprop.data.standardize){wider}"
    )


def check_class_labels(y: np.ndarray, num_classes: int, what: str) -> None:
    """Raise :class:`~arrayprop.errors.LabelError` unless ``y`` holds integers in [0, k).

    The host twin of :func:`class_labels_ok`. The message names the first bad label, its index
    and the valid range.

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        Class labels.
    num_classes : int
        k, the number of classes (the model's outputs).
    what : str
        How the message names ``y``, e.g. ``"fit: y"``.
    """
    if y.dtype.kind not in "iu":
        raise LabelError(_label_dtype_message(what, tuple(y.shape), num_classes, y.dtype))
    found = _out_of_range(y, num_classes)
    if found is not None:
        bad, index = found
        raise LabelError(
            f"{what}: label {bad} at index {index} is out of range for a model with "
            f"{num_classes} outputs (valid: 0..{num_classes - 1})"
        )


def _out_of_range(a: np.ndarray, n: int) -> tuple[int, str] | None:
    """The first value of ``a`` outside [0, n) (the smallest if one is negative, else the
    largest) and its position, or None: a min and a max, the position looked up only then."""
    if a.size == 0:
        return None
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi < n:
        return None
    bad = lo if lo < 0 else hi
    return bad, format_index(np.argwhere(a == bad)[0])


def check_indices(x: np.ndarray, num_embeddings: int, what: str) -> None:
    """Raise :class:`~arrayprop.errors.DataError` unless ``x`` holds integers in [0, n).

    The host check of an embedding's indices (a min and a max; the position is only looked
    up for the message). The message names the first bad index, its position and the range.

    Parameters
    ----------
    x : numpy.ndarray of int, any shape
        Row indices into a table of ``num_embeddings`` rows.
    num_embeddings : int
        n, the rows of the table.
    what : str
        How the message names the layer, e.g. ``"Embedding(10, 4)"``.
    """
    found = _out_of_range(x, num_embeddings)
    if found is not None:
        bad, index = found
        raise DataError(
            f"{what}: index {bad} at position {index} is out of range for a table of "
            f"{num_embeddings} rows (valid: 0..{num_embeddings - 1})"
        )


def class_labels_ok(xp: Any, y: Any, num_classes: int, what: str) -> Any:
    """0-d device bool: ``y`` passes :func:`check_class_labels` (its device twin).

    A dtype other than integer is known without reading the data: it raises
    :class:`~arrayprop.errors.LabelError` at once, as the host twin does.

    Parameters
    ----------
    xp : namespace
        The Array API namespace of ``y``.
    y : array, shape (n,)
        Class labels on the device.
    num_classes, what
        As for :func:`check_class_labels`.

    Returns
    -------
    array, shape (), bool
    """
    if not xp.isdtype(y.dtype, "integral"):
        raise LabelError(_label_dtype_message(what, tuple(y.shape), num_classes, y.dtype))
    # Python scalars are compared only where the dtype can hold them (the standard's rule): no
    # ``>= 0`` for unsigned labels, no ``< k`` for a k beyond the dtype's range.
    inside = [y >= 0] if not xp.isdtype(y.dtype, "unsigned integer") else []
    if num_classes <= xp.iinfo(y.dtype).max:
        inside.append(y < num_classes)
    if not inside:
        return xp.ones((), dtype=xp.bool, device=y.device)
    return xp.all(inside[0] if len(inside) == 1 else inside[0] & inside[1])


def _label_dtype_message(what: str, shape: tuple[int, ...], num_classes: int, dtype: Any) -> str:
    return (
        f"{what}: class labels of shape {shape} must be integers 0..{num_classes - 1}, got dtype "
        f"{dtype} (pass one-hot rows of shape (n, {num_classes}) instead, or cast the labels)"
    )


def row_sum_tolerance(classes: int, eps: float) -> float:
    """How far from 1 a row of probabilities may sum: rounding of ``classes`` values whose dtype
    has machine epsilon ``eps`` (0 for integers), and never less than 1e-3, so that rows
    computed in a narrower dtype (float32 softmax outputs stored as float64) pass."""
    return max(1e-3, 4.0 * classes * eps)


def check_target_rows(y: np.ndarray, what: str, *, block_rows: int = CHECK_BLOCK_ROWS) -> None:
    """Raise :class:`~arrayprop.errors.LabelError` unless every row of ``y`` (along its last
    axis) is a probability distribution: entries >= 0 that sum to 1 (within
    :func:`row_sum_tolerance`).

    The host twin of :func:`target_rows_ok`: the targets of softmax cross-entropy, where a
    negative entry or a row that does not sum to 1 gives a meaningless (even negative) loss.
    Scans ``block_rows`` rows at a time; the message names the first bad row.
    """
    if y.ndim == 0 or y.size == 0:
        return
    kind = y.dtype.kind
    if kind == "b":
        y = y.astype(np.int8)
    eps = float(np.finfo(y.dtype).eps) if kind == "f" else 0.0
    tol = row_sum_tolerance(y.shape[-1], eps)
    for start in range(0, y.shape[0], block_rows):
        block = np.asarray(y[start : start + block_rows])
        sums = block.sum(axis=-1, dtype=np.float64)
        negative = (block < 0).any(axis=-1)
        bad = negative | ~(np.abs(sums - 1.0) <= tol)
        if bad.any():
            pos = np.argwhere(bad)[0]
            row = tuple(int(p) for p in pos)
            index = format_index(np.asarray([row[0] + start, *row[1:]]))
            if negative[row]:
                problem = f"has a negative entry {block[row].min()}"
            else:
                problem = f"sums to {sums[row]:.6g}"
            raise LabelError(
                f"{what}: target row {index} {problem}; softmax cross-entropy takes rows of "
                "probabilities (entries >= 0 summing to 1), e.g. one-hot rows, or integer class "
                "labels of shape (n,)"
            )


def target_rows_ok(xp: Any, y: Any) -> Any:
    """0-d device bool: ``y`` passes :func:`check_target_rows` (its device twin).

    Parameters
    ----------
    xp : namespace
        The Array API namespace of ``y``.
    y : array, shape (n, ..., k)
        Target rows on the device (any real dtype).

    Returns
    -------
    array, shape (), bool
    """
    if xp.isdtype(y.dtype, "real floating"):
        tol = row_sum_tolerance(y.shape[-1], float(xp.finfo(y.dtype).eps))
    else:
        y = xp.astype(y, xp.float32)  # one-hot integers or bools: sums exact below 2**24
        tol = row_sum_tolerance(y.shape[-1], 0.0)
    sums_ok = xp.all(xp.abs(xp.sum(y, axis=-1) - 1.0) <= tol)
    return xp.logical_and(xp.all(y >= 0.0), sums_ok)


def format_index(pos: np.ndarray) -> str:
    """An element's index for a message: ``3`` in a 1-d array, ``(2, 1)`` in a 2-d one."""
    return str(int(pos[0])) if pos.size == 1 else str(tuple(int(p) for p in pos))
