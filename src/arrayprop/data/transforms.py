"""Host-side data helpers of :mod:`arrayprop.data`: standardize, one_hot, splits, batches.

NumPy only; import these from :mod:`arrayprop.data`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from arrayprop.errors import LabelError, ShapeError
from arrayprop.random import Seed, host_rng
from arrayprop.validation import POSITIVE_INT, UNIT_OPEN, Interval, check, format_index

#: (x_train, y_train), (x_held_out, y_held_out): what the splitting functions return.
Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: What the scalar arguments of the helpers here may be (:func:`arrayprop.validation.check`).
FRACTION = UNIT_OPEN
COUNT = Interval(int, 0, None)


# ---------------------------------------------------------------------------
# Splitting (shared by load_digits and train_val_split)
# ---------------------------------------------------------------------------


def split_count(n: int, fraction: float, name: str) -> int:
    """Number of samples that go to the held-out part: round(fraction * n), in [1, n - 1]."""
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) with {name}={fraction}; need at least 2")
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def split_indices(
    n: int,
    n_held: int,
    rng: np.random.Generator,
    labels: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(kept, held)`` index arrays, both shuffled.

    With ``labels`` the split is stratified: each class contributes to the
    held-out part in proportion to its size (largest-remainder rounding so the
    held-out part has exactly ``n_held`` samples).
    """
    if labels is None:
        perm = rng.permutation(n)
        return perm[n_held:], perm[:n_held]

    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse)
    exact = counts * (n_held / n)
    alloc = np.floor(exact).astype(np.int64)
    short = n_held - int(alloc.sum())
    if short > 0:
        # Classes with the largest fractional parts get one more; ties by class order.
        order = np.argsort(-(exact - alloc), kind="stable")
        alloc[order[:short]] += 1

    held_parts = []
    kept_parts = []
    for c, k in enumerate(alloc):
        idx = rng.permutation(np.flatnonzero(inverse == c))
        held_parts.append(idx[:k])
        kept_parts.append(idx[k:])
    held = rng.permutation(np.concatenate(held_parts))
    kept = rng.permutation(np.concatenate(kept_parts))
    return kept, held


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def standardize(
    x: npt.ArrayLike,
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardize features column-wise: ``(x - mean) / std``.

    Compute ``mean`` and ``std`` on the training data, then pass them back in
    to apply the same transform to validation or test data.

    Parameters
    ----------
    x : array_like, shape (n, ...)
        Data; statistics are taken over axis 0.
    mean, std : array_like, shape x.shape[1:], optional
        Statistics to use. Each one that is None is computed from ``x``
        (``std`` is the population standard deviation, ``ddof=0``).

    Returns
    -------
    x_std : numpy.ndarray
        Same shape as ``x``. Floating inputs keep their dtype; other inputs
        become float32.
    mean : numpy.ndarray
        The mean used, shape ``x.shape[1:]``, dtype of ``x_std``.
    std : numpy.ndarray
        The scale used, shape ``x.shape[1:]``, dtype of ``x_std``. Entries
        that are 0 (constant columns) are replaced by 1, so those columns
        are only centred, never divided by zero.

    Raises
    ------
    ValueError
        If ``x`` is 0-D, or ``mean``/``std`` must be computed from an empty ``x``.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("standardize needs an array with a sample axis, got a 0-D array")
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    if (mean is None or std is None) and x.shape[0] == 0:
        raise ValueError("cannot compute mean/std of an empty array")
    x64 = x.astype(np.float64)
    mean_ = x64.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    std_ = x64.std(axis=0) if std is None else np.asarray(std, dtype=np.float64)
    std_ = np.where(std_ == 0.0, 1.0, std_)
    x_std = ((x64 - mean_) / std_).astype(dtype)
    return x_std, mean_.astype(dtype), std_.astype(dtype)


#: Largest result :func:`one_hot` allocates when it infers ``num_classes`` from the labels.
ONE_HOT_INFERRED_MAX_BYTES = 2**30


def one_hot(
    labels: npt.ArrayLike,
    num_classes: int | None = None,
    dtype: npt.DTypeLike = np.float32,
) -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Parameters
    ----------
    labels : array_like of int, shape (n,) or any shape
        Class labels in ``[0, num_classes)``. Floating arrays are accepted
        only when every value is a whole number.
    num_classes : int, optional
        Number of classes ``C``; defaults to ``max(labels) + 1``.
    dtype : numpy dtype, default float32
        dtype of the result.

    Returns
    -------
    numpy.ndarray
        Shape ``labels.shape + (C,)``; row ``i`` has a 1 in column
        ``labels[i]`` and 0 elsewhere.

    Raises
    ------
    arrayprop.errors.LabelError
        If a label is not an integer, is negative, or is ``>= num_classes``;
        the message names the first bad label and the valid range. Also when
        ``num_classes`` is inferred and the result would exceed
        :data:`ONE_HOT_INFERRED_MAX_BYTES` (one huge stray label).
    ValueError
        If ``num_classes`` is less than 1.
    """
    arr = np.asarray(labels)
    if arr.dtype.kind in "iu":
        ints = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        ints = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        bad = ~(np.isfinite(arr) & (arr == np.round(arr)))
        if bad.any():
            pos = np.argwhere(bad)[0]
            raise LabelError(
                f"label {float(arr[tuple(pos)])!r} at index {format_index(pos)} is not an integer"
            )
        ints = arr.astype(np.int64)
    else:
        raise LabelError(f"labels must be integers, got an array of dtype {arr.dtype}")

    inferred = num_classes is None
    if num_classes is None:
        num_classes = max(int(ints.max()) + 1, 1) if ints.size else 0
    else:
        num_classes = check("one_hot", "num_classes", num_classes, POSITIVE_INT)

    bad = (ints < 0) | (ints >= num_classes)
    if bad.any():
        pos = np.argwhere(bad)[0]
        raise LabelError(
            f"label {int(ints[tuple(pos)])} at index {format_index(pos)} is out of range "
            f"[0, {num_classes}) for num_classes={num_classes}"
            + (" (inferred from the largest label)" if inferred else "")
        )
    nbytes = ints.size * num_classes * np.dtype(dtype).itemsize
    if inferred and nbytes > ONE_HOT_INFERRED_MAX_BYTES:
        # One stray label (a raw id, a sentinel) must not make one_hot allocate gigabytes.
        raise LabelError(
            f"one_hot: the largest label, {num_classes - 1}, implies num_classes={num_classes}; "
            f"{ints.size} one-hot rows would take {nbytes / 2**30:.1f} GiB. Pass num_classes "
            "explicitly if that is intended"
        )
    out = np.zeros((*ints.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, ints[..., None], 1, axis=-1)
    return out


def train_val_split(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    val_fraction: float = 0.1,
    seed: Seed = 0,
    stratify: bool = False,
) -> Split:
    """Split ``(x, y)`` at random into a training part and a validation part.

    Parameters
    ----------
    x : array_like, shape (n, ...)
        Inputs.
    y : array_like, shape (n, ...)
        Targets, aligned with ``x`` along axis 0.
    val_fraction : float, default 0.1
        Fraction held out for validation, strictly between 0 and 1. The
        validation part gets ``round(val_fraction * n)`` samples, at least 1
        and at most ``n - 1``.
    seed : int, numpy.random.Generator or None, default 0
        Random seed; the same integer seed gives the same split.
    stratify : bool, default False
        Keep the class proportions of ``y`` in both parts. Requires ``y`` to
        be a 1-D array of class labels.

    Returns
    -------
    (x_train, y_train), (x_val, y_val) : tuple of tuples of numpy.ndarray
        Rows of ``x`` and ``y`` (same dtypes, shuffled); every sample lands
        in exactly one part.

    Raises
    ------
    arrayprop.errors.ShapeError
        If ``x`` and ``y`` have different lengths, or ``stratify`` is True
        and ``y`` is not 1-D.
    ValueError
        If ``val_fraction`` is not strictly between 0 and 1 or there are
        fewer than 2 samples.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError("x and y must have a sample axis; got a 0-D array")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if stratify and y.ndim != 1:
        raise ShapeError(f"stratify=True needs 1-D class labels y, got shape {y.shape}")
    val_fraction = check("train_val_split", "val_fraction", val_fraction, FRACTION)
    n = x.shape[0]
    n_val = split_count(n, val_fraction, "val_fraction")
    rng = host_rng(seed)
    train, val = split_indices(n, n_val, rng, y if stratify else None)
    return (x[train], y[train]), (x[val], y[val])


def batches(
    n: int, batch_size: int | None, *, shuffle: bool = True, seed: Seed = None
) -> Iterator[np.ndarray]:
    """Iterate over mini-batches of sample indices for one epoch.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 0``.
    batch_size : int or None
        Samples per batch; ``None`` gives one full batch of all ``n``
        samples. The last batch holds the remainder when ``batch_size`` does
        not divide ``n``.
    shuffle : bool, default True
        Visit the samples in a random order (otherwise ``0 .. n - 1``).
    seed : int, numpy.random.Generator or None, default None
        Seed of the shuffle; pass a Generator to get a new order each epoch
        from one stream.

    Returns
    -------
    iterator of numpy.ndarray
        int64 index arrays of shape ``(batch_size,)`` (the last may be
        shorter). Together they contain every index in ``0 .. n - 1``
        exactly once. ``n == 0`` yields nothing.

    Raises
    ------
    ValueError
        If ``n < 0`` or ``batch_size <= 0`` (raised at call time, not on
        first iteration).

    Examples
    --------
    >>> [b.tolist() for b in batches(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    n = check("batches", "n", n, COUNT)
    if batch_size is None:
        size = max(n, 1)
    else:
        size = check("batches", "batch_size", batch_size, POSITIVE_INT)
    order = host_rng(seed).permutation(n) if shuffle else np.arange(n)
    return _iter_batches(order.astype(np.int64, copy=False), size)


def _iter_batches(order: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, order.shape[0], size):
        yield order[start : start + size]
