"""Real data sets of :mod:`arrayprop.data`: the bundled UCI digits and IDX / MNIST files.

NumPy only, never downloads; import these from :mod:`arrayprop.data`.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import zlib
from importlib.resources import files
from pathlib import Path

import numpy as np

from arrayprop.data.transforms import FRACTION, Split, split_count, split_indices
from arrayprop.errors import DataError
from arrayprop.random import Seed, host_rng
from arrayprop.validation import Options, check

#: The parts of MNIST :func:`load_mnist` reads, and their file-name prefixes.
MNIST_PARTS = {"train": "train", "test": "t10k"}

# ---------------------------------------------------------------------------
# Bundled UCI digits
# ---------------------------------------------------------------------------


def _read_bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    resource = files("arrayprop.data").joinpath("bundled", "digits.npz")
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
    test_size = check("load_digits", "test_size", test_size, FRACTION)
    images, labels = _read_bundled_digits()
    x = images.astype(np.float32)
    if normalize:
        x /= np.float32(16.0)
    y = labels.astype(np.int64)

    n = y.shape[0]
    rng = host_rng(seed)
    train, test = split_indices(n, split_count(n, test_size, "test_size"), rng, y)
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
    check("load_mnist", "kind", kind, Options(tuple(MNIST_PARTS)))
    directory = Path(os.fspath(directory))
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "MNIST directory not found", str(directory))
    prefix = MNIST_PARTS[kind]
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
