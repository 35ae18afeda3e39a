"""Host-side data loading, synthetic data sets and small data helpers.

Everything in this module runs on the host with NumPy only; move the arrays to
an Array API backend afterwards. All randomness comes from
:func:`numpy.random.default_rng` seeded by the caller, so every function is
reproducible given its ``seed``.

Contents
--------
Real data
    :func:`load_digits` (bundled UCI 8x8 digits), :func:`load_mnist` and
    :func:`load_idx` (MNIST / Fashion-MNIST IDX files on disk; never downloads).
Synthetic data
    :func:`make_spirals`, :func:`make_xor`, :func:`make_linear_regression`,
    :func:`make_logistic_regression`.
Helpers
    :func:`standardize`, :func:`one_hot`, :func:`train_val_split`,
    :func:`batches`.
Host side of training
    :func:`host_array`, :func:`check_finite`, :func:`check_class_labels`,
    :func:`shuffler`, :func:`rng_state`, :func:`rng_from_state`,
    :func:`gather_rows`: what :func:`arrayprop.fit` does with host data
    before it moves it to the device in large chunks.
"""

from __future__ import annotations

import errno
import gzip
import math
import operator
import os
import zlib
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import numpy as np
import numpy.typing as npt

from arrayprop.errors import (
    BackendMismatchError,
    DataError,
    LabelError,
    NonFiniteError,
    ShapeError,
)

__all__ = [
    "batches",
    "check_class_labels",
    "check_finite",
    "gather_rows",
    "host_array",
    "load_digits",
    "load_idx",
    "load_mnist",
    "make_linear_regression",
    "make_logistic_regression",
    "make_spirals",
    "make_xor",
    "one_hot",
    "rng_from_state",
    "rng_state",
    "shuffler",
    "standardize",
    "train_val_split",
]

Seed = int | np.random.Generator | None
Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------
# Splitting (shared by load_digits and train_val_split)
# ---------------------------------------------------------------------------


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return value


def _split_count(n: int, fraction: float, name: str) -> int:
    """Number of samples that go to the held-out part: round(fraction * n), in [1, n - 1]."""
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) with {name}={fraction}; need at least 2")
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def _split_indices(
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
# Bundled UCI digits
# ---------------------------------------------------------------------------


def _read_bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    resource = files("arrayprop").joinpath("datasets", "digits.npz")
    try:
        with resource.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            images = np.asarray(npz["images"])
            labels = np.asarray(npz["labels"])
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "bundled digits data set is missing", str(resource)
        ) from None
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"digits.npz: cannot read bundled digits data set ({exc})") from exc
    if images.ndim != 2 or images.shape[1] != 64 or labels.shape != (images.shape[0],):
        raise DataError(
            f"digits.npz: expected images (n, 64) and labels (n,), "
            f"found {images.shape} and {labels.shape}"
        )
    return images, labels


def load_digits(*, test_size: float = 0.2, seed: Seed = 0, normalize: bool = True) -> Split:
    """Load the bundled UCI 8x8 handwritten digits with a stratified train/test split.

    The data set has 1,797 grayscale 8x8 images (flattened to 64 features with
    integer intensities 0..16) of the digits 0..9, roughly 180 per class. It
    ships with arrayprop (see ``datasets/DIGITS_LICENSE.txt``); nothing is
    downloaded.

    Parameters
    ----------
    test_size : float, default 0.2
        Fraction of the samples held out for testing, strictly between 0 and 1.
        The test set gets ``round(test_size * 1797)`` samples, split across
        the classes in proportion to their sizes.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the split. The same integer seed always gives the same split.
    normalize : bool, default True
        Divide the intensities by 16 so that features lie in [0, 1]. When
        False, the features keep their integer values 0..16 (still float32).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        ``x_*`` are float32 of shape ``(n_*, 64)``; ``y_*`` are int64 labels
        of shape ``(n_*,)`` with values 0..9. With the default ``test_size``,
        ``n_train = 1438`` and ``n_test = 359``. Both parts are shuffled.

    Raises
    ------
    ValueError
        If ``test_size`` is not strictly between 0 and 1.
    arrayprop.errors.DataError
        If the bundled file is corrupt.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_digits(seed=0)
    >>> x_train.shape, x_test.shape
    ((1438, 64), (359, 64))
    """
    test_size = _check_fraction("test_size", test_size)
    images, labels = _read_bundled_digits()
    x = images.astype(np.float32)
    if normalize:
        x /= np.float32(16.0)
    y = labels.astype(np.int64)

    n = y.shape[0]
    rng = np.random.default_rng(seed)
    train, test = _split_indices(n, _split_count(n, test_size, "test_size"), rng, y)
    return (x[train], y[train]), (x[test], y[test])


# ---------------------------------------------------------------------------
# IDX files (MNIST format)
# ---------------------------------------------------------------------------

# type code -> (big-endian dtype, readable name)
_IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "uint8"),
    0x09: (">i1", "int8"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST file format), gzipped or raw.

    The IDX layout is: two zero bytes, a type byte (``0x08`` uint8, ``0x09``
    int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64),
    a byte with the number of dimensions ``ndim``, ``ndim`` big-endian uint32
    dimension sizes, then the data in C order and big-endian byte order.
    Gzip compression is recognised by the file's first two bytes
    (``1f 8b``), whatever its name.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    numpy.ndarray
        Array with the dtype named by the type byte, in native byte order, of
        shape ``(d_0, ..., d_{ndim-1})``. It is a fresh, writable array.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (``filename`` is set to the path).
    arrayprop.errors.DataError
        If the file is malformed: a corrupt gzip stream, a header that is too
        short, a bad magic number, an unknown type code, or a data section
        that is shorter or longer than the dimensions require. The message
        starts with the path.
    """
    path = Path(os.fspath(path))
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "IDX file not found", name) from None

    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{name}: corrupt gzip stream ({exc})") from exc

    if len(raw) < 4:
        raise DataError(f"{name}: file too short for an IDX header ({len(raw)} bytes, need 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{name}: bad magic number 0x{raw[:4].hex()}; an IDX file starts with two zero bytes"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        known = ", ".join(f"0x{code:02X} ({tname})" for code, (_, tname) in _IDX_TYPES.items())
        raise DataError(f"{name}: unknown IDX type code 0x{type_code:02X}; expected one of {known}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(
            f"{name}: header declares {ndim} dimensions, which needs {header_len} header bytes, "
            f"but the file has only {len(raw)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    be_dtype, type_name = _IDX_TYPES[type_code]
    dtype = np.dtype(be_dtype)
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header_len
    if found != expected:
        detail = "" if found < expected else f" ({found - expected} trailing bytes)"
        raise DataError(
            f"{name}: expected {expected} bytes of {type_name} data for shape {shape}, "
            f"found {found}{detail}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_mnist_file(directory: Path, prefix: str, what: str, idx: str) -> Path:
    candidates = [
        f"{prefix}-{what}-{idx}-ubyte",
        f"{prefix}-{what}.{idx}-ubyte",
    ]
    candidates = [n + suffix for n in candidates for suffix in ("", ".gz")]
    for candidate in candidates:
        path = directory / candidate
        if path.is_file():
            return path
    raise FileNotFoundError(
        errno.ENOENT,
        f"no MNIST {what} file in directory (looked for {', '.join(candidates)})",
        str(directory),
    )


def load_mnist(
    directory: str | os.PathLike[str], kind: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST (or Fashion-MNIST, or any data in the same layout) from IDX files.

    Looks in ``directory`` for ``{prefix}-images-idx3-ubyte`` and
    ``{prefix}-labels-idx1-ubyte``, where ``prefix`` is ``train`` or ``t10k``,
    each optionally gzipped (``.gz``), and also accepts the dotted variants
    ``{prefix}-images.idx3-ubyte`` / ``{prefix}-labels.idx1-ubyte``. Nothing
    is ever downloaded.

    Parameters
    ----------
    directory : str or os.PathLike
        Directory holding the IDX files.
    kind : {"train", "test"}, default "train"
        Which part to load; ``"test"`` reads the ``t10k-*`` files.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, height * width)`` (``(n, 784)`` for MNIST),
        intensities scaled from 0..255 to [0, 1].
    y : numpy.ndarray
        int64 labels of shape ``(n,)``.

    Raises
    ------
    ValueError
        If ``kind`` is not ``"train"`` or ``"test"``.
    FileNotFoundError
        If the directory or one of the two files is missing.
    arrayprop.errors.DataError
        If a file is malformed (see :func:`load_idx`), the images are not a
        3-D uint8 array, the labels are not a 1-D integer array, or the
        numbers of images and labels differ.
    """
    prefixes = {"train": "train", "test": "t10k"}
    if kind not in prefixes:
        valid = ", ".join(repr(k) for k in prefixes)
        raise ValueError(f"kind must be one of {valid}; got {kind!r}")
    directory = Path(os.fspath(directory))
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "MNIST directory not found", str(directory))
    prefix = prefixes[kind]
    images_path = _find_mnist_file(directory, prefix, "images", "idx3")
    labels_path = _find_mnist_file(directory, prefix, "labels", "idx1")

    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected a 3-D uint8 image array (n, height, width), "
            f"found {images.ndim}-D {images.dtype} with shape {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_path}: expected a 1-D integer label array, "
            f"found {labels.ndim}-D {labels.dtype} with shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path.name} has {images.shape[0]} images but {labels_path.name} has "
            f"{labels.shape[0]} labels (in {directory})"
        )
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    x /= np.float32(255.0)
    return x, labels.astype(np.int64)


# ---------------------------------------------------------------------------
# Synthetic data sets
# ---------------------------------------------------------------------------


def _check_count(name: str, value: int, minimum: int) -> int:
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _check_noise(noise: float) -> float:
    noise = float(noise)
    if not (noise >= 0.0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return noise


def make_spirals(
    n: int = 300, classes: int = 3, noise: float = 0.2, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved 2-D spirals, one arm per class (not linearly separable).

    Each arm has points at radii evenly spaced in [0, 1]; the angle of class
    ``k`` runs over ``[4k, 4(k + 1)]`` radians plus Gaussian jitter of
    standard deviation ``noise``.

    Parameters
    ----------
    n : int, default 300
        Total number of points; class ``k`` gets ``n // classes`` points,
        plus one for the first ``n % classes`` classes.
    classes : int, default 3
        Number of classes (spiral arms), at least 1.
    noise : float, default 0.2
        Standard deviation of the angular jitter, in radians.
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, 2)``, inside the unit disc.
    y : numpy.ndarray
        int64 of shape ``(n,)`` with values ``0 .. classes - 1``.
        The points are shuffled (not grouped by class).
    """
    n = _check_count("n", n, 1)
    classes = _check_count("classes", classes, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    sizes = [n // classes + (1 if k < n % classes else 0) for k in range(classes)]
    xs = []
    ys = []
    for k, m in enumerate(sizes):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(4.0 * k, 4.0 * (k + 1), m) + noise * rng.standard_normal(m)
        xs.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        ys.append(np.full(m, k, dtype=np.int64))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys)
    perm = rng.permutation(n)
    return x[perm], y[perm]


def make_xor(n: int = 200, noise: float = 0.1, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: four Gaussian blobs at the corners ``(±0.5, ±0.5)``.

    The label of each point is the XOR of the signs of its two coordinates,
    computed from the returned (noisy) coordinates, so
    ``y == ((x[:, 0] > 0) != (x[:, 1] > 0))`` always holds exactly.

    Parameters
    ----------
    n : int, default 200
        Number of points.
    noise : float, default 0.1
        Standard deviation of the Gaussian blobs around the corners. Larger
        values move more points close to the axes (the decision boundary).
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, 2)``.
    y : numpy.ndarray
        int64 of shape ``(n,)``: 1 where exactly one coordinate is positive,
        else 0.
    """
    n = _check_count("n", n, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    corners = rng.choice(np.array([-0.5, 0.5]), size=(n, 2))
    x = (corners + noise * rng.standard_normal((n, 2))).astype(np.float32)
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    return x, y


def make_linear_regression(
    n: int = 200, features: int = 3, noise: float = 0.1, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A linear regression problem ``y = x @ true_w + true_b + noise``.

    Parameters
    ----------
    n : int, default 200
        Number of samples.
    features : int, default 3
        Number of input features.
    noise : float, default 0.1
        Standard deviation of the Gaussian noise added to ``y``.
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, features)``, standard normal.
    y : numpy.ndarray
        float32 of shape ``(n, 1)``.
    true_w : numpy.ndarray
        float32 of shape ``(features, 1)``, the weights used (standard normal).
    true_b : numpy.ndarray
        float32 of shape ``(1,)``, the bias used (standard normal).
    """
    n = _check_count("n", n, 1)
    features = _check_count("features", features, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    true_w = rng.standard_normal((features, 1))
    true_b = rng.standard_normal(1)
    x = rng.standard_normal((n, features))
    y = x @ true_w + true_b + noise * rng.standard_normal((n, 1))
    f32 = np.float32
    return x.astype(f32), y.astype(f32), true_w.astype(f32), true_b.astype(f32)


def make_logistic_regression(
    n: int = 200, features: int = 2, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A binary classification problem that is nearly linearly separable.

    A random unit vector ``w`` and offset ``b`` define the hyperplane
    ``x @ w + b = 0``; each label is drawn from a Bernoulli distribution with
    probability ``sigmoid(8 * (x @ w + b))``, so labels are almost always
    the side of the hyperplane, with a few flips close to it.

    Parameters
    ----------
    n : int, default 200
        Number of samples.
    features : int, default 2
        Number of input features.
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, features)``, standard normal.
    y : numpy.ndarray
        int64 of shape ``(n,)`` with values 0 and 1.
    """
    n = _check_count("n", n, 1)
    features = _check_count("features", features, 1)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(features)
    w /= np.linalg.norm(w)
    b = 0.25 * rng.standard_normal()
    x = rng.standard_normal((n, features))
    p = 1.0 / (1.0 + np.exp(-8.0 * (x @ w + b)))
    y = (rng.random(n) < p).astype(np.int64)
    return x.astype(np.float32), y


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
                f"label {float(arr[tuple(pos)])!r} at index {_fmt_index(pos)} is not an integer"
            )
        ints = arr.astype(np.int64)
    else:
        raise LabelError(f"labels must be integers, got an array of dtype {arr.dtype}")

    inferred = num_classes is None
    if num_classes is None:
        num_classes = max(int(ints.max()) + 1, 1) if ints.size else 0
    else:
        num_classes = operator.index(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")

    bad = (ints < 0) | (ints >= num_classes)
    if bad.any():
        pos = np.argwhere(bad)[0]
        raise LabelError(
            f"label {int(ints[tuple(pos)])} at index {_fmt_index(pos)} is out of range "
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


def _fmt_index(pos: np.ndarray) -> str:
    return str(int(pos[0])) if pos.size == 1 else str(tuple(int(p) for p in pos))


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
    val_fraction = _check_fraction("val_fraction", val_fraction)
    n = x.shape[0]
    n_val = _split_count(n, val_fraction, "val_fraction")
    rng = np.random.default_rng(seed)
    train, val = _split_indices(n, n_val, rng, y if stratify else None)
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
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size is None:
        size = max(n, 1)
    else:
        size = operator.index(batch_size)
        if size <= 0:
            raise ValueError(f"batch_size must be a positive integer or None, got {size}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    return _iter_batches(order.astype(np.int64, copy=False), size)


def _iter_batches(order: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, order.shape[0], size):
        yield order[start : start + size]


# ---------------------------------------------------------------------------
# Host side of training (used by arrayprop.train.fit / evaluate / predict)
# ---------------------------------------------------------------------------

#: Rows per block when scanning host data for NaN / infinity (bounds the temporary memory).
CHECK_BLOCK_ROWS = 65536


def host_array(x: object, what: str) -> np.ndarray:
    """``x`` as a host NumPy array, without copying NumPy arrays (a memmap stays on disk).

    Raises
    ------
    arrayprop.errors.BackendMismatchError
        If ``x`` is an array of a device library (torch, cupy, jax, array-api-strict).
    """
    from arrayprop.backend import _is_host

    if not _is_host(x):
        mod = type(x).__module__.split(".")[0]
        raise BackendMismatchError(
            f"{what}: got a {mod}.{type(x).__name__}, which is neither host (NumPy) data nor an "
            "array of the model's backend; move it explicitly"
        )
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def check_finite(x: np.ndarray, what: str, *, block_rows: int = CHECK_BLOCK_ROWS) -> None:
    """Raise :class:`~arrayprop.errors.NonFiniteError` naming the first NaN / infinity in ``x``.

    Scans ``block_rows`` rows at a time, so a memmap larger than memory is checked in one
    pass with a bounded temporary. Integer and boolean data are always finite.
    """
    if x.dtype.kind not in "fc":
        return
    for start in range(0, x.shape[0], block_rows):
        block = np.asarray(x[start : start + block_rows])
        ok = np.isfinite(block)
        if not ok.all():
            pos = np.argwhere(~ok)[0]
            value = block[tuple(pos)]
            pos[0] += start
            raise NonFiniteError(
                f"{what} contains {value} at index {_fmt_index(pos)}; NaN and infinity cannot be "
                "trained on (clean or impute the data first)"
            )


def check_class_labels(y: np.ndarray, num_classes: int, what: str) -> None:
    """Raise :class:`~arrayprop.errors.LabelError` unless ``y`` holds integers in [0, k).

    The message names the first bad label, its index and the valid range.
    """
    if y.dtype.kind not in "iu":
        raise LabelError(
            f"{what}: class labels of shape {y.shape} must be integers 0..{num_classes - 1}, "
            f"got dtype {y.dtype} (pass one-hot rows of shape (n, {num_classes}) instead, or "
            "cast the labels)"
        )
    if y.size == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        index = int(np.flatnonzero(y == bad)[0])
        raise LabelError(
            f"{what}: label {bad} at index {index} is out of range for a model with "
            f"{num_classes} outputs (valid: 0..{num_classes - 1})"
        )


def shuffler(seed: Seed) -> np.random.Generator:
    """The host Generator :func:`arrayprop.fit` draws each epoch's permutation from."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def rng_state(rng: np.random.Generator) -> dict:
    """A JSON-able copy of a Generator's state (its big integers written as strings)."""
    return _stringify(rng.bit_generator.state)


def rng_from_state(state: dict) -> np.random.Generator:
    """The Generator whose state :func:`rng_state` wrote (draws continue exactly)."""
    state = _unstringify(state)
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _stringify(value: object) -> object:
    """Integers as ``"int:<digits>"`` (JSON readers may round big ones), arrays tagged."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"ndarray": value.dtype.str, "values": [_stringify(v) for v in value.tolist()]}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"int:{int(value)}"
    return value


def _unstringify(value: object) -> object:
    if isinstance(value, dict):
        if set(value) == {"ndarray", "values"}:
            values = [_unstringify(v) for v in value["values"]]
            return np.asarray(values, dtype=np.dtype(value["ndarray"]))
        return {k: _unstringify(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("int:"):
        return int(value[4:])
    return value


def gather_rows(x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """``x[rows]`` as one contiguous in-memory array, ready for one device copy.

    ``rows`` is an index array (a chunk of a shuffled order) or a slice. Reading a memmap this
    way touches only the rows of the chunk.
    """
    if isinstance(rows, slice):
        return np.array(x[rows], order="C")  # a copy in memory, also for a memmap
    return np.asarray(np.take(x, rows, axis=0))  # a plain ndarray, not a memmap subclass
