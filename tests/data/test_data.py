"""Tests of arrayprop.data (host-side NumPy data loading and helpers)."""

from __future__ import annotations

import gzip
import struct
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import pytest

from arrayprop import data
from arrayprop.errors import ArrayPropError, DataError, LabelError, ShapeError

# ---------------------------------------------------------------------------
# A small IDX writer, independent of the reader under test
# ---------------------------------------------------------------------------

TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(arr: np.ndarray, type_code: int | None = None) -> bytes:
    arr = np.asarray(arr)
    code = TYPE_CODES[arr.dtype] if type_code is None else type_code
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> Path:
    payload = idx_bytes(arr)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------


def test_error_hierarchy():
    assert issubclass(DataError, ArrayPropError)
    assert issubclass(DataError, ValueError)
    assert issubclass(LabelError, ValueError)
    assert issubclass(ShapeError, ValueError)


# ---------------------------------------------------------------------------
# Bundled digits
# ---------------------------------------------------------------------------

DIGITS_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_shapes_dtypes_and_range():
    (x_tr, y_tr), (x_te, y_te) = data.load_digits()
    assert x_tr.shape == (1438, 64) and x_te.shape == (359, 64)
    assert y_tr.shape == (1438,) and y_te.shape == (359,)
    assert x_tr.dtype == np.float32 and x_te.dtype == np.float32
    assert y_tr.dtype == np.int64 and y_te.dtype == np.int64
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    # normalized values are multiples of 1/16
    np.testing.assert_array_equal(x_tr * 16, np.round(x_tr * 16))


def test_digits_class_counts_and_stratification():
    (_, y_tr), (_, y_te) = data.load_digits()
    total = np.bincount(np.concatenate([y_tr, y_te]), minlength=10)
    np.testing.assert_array_equal(total, DIGITS_CLASS_COUNTS)
    # stratified: each class's test count is within one of 20 % of its size
    expected = 0.2 * np.array(DIGITS_CLASS_COUNTS)
    assert np.all(np.abs(np.bincount(y_te, minlength=10) - expected) < 1.0)


def test_digits_unnormalized_keeps_integer_values():
    (x_tr, _), (x_te, _) = data.load_digits(normalize=False)
    x = np.concatenate([x_tr, x_te])
    assert x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 16.0
    np.testing.assert_array_equal(x, np.round(x))
    (x_norm, _), _ = data.load_digits(normalize=True)
    np.testing.assert_allclose(x_norm * 16, x_tr)


def _sorted_rows(x, y):
    rows = np.column_stack([x, y]).astype(np.int64)
    return rows[np.lexsort(rows.T[::-1])]


def test_digits_split_is_a_partition_of_the_bundled_file():
    with as_file(files("arrayprop.data") / "bundled" / "digits.npz") as path:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    assert images.dtype == np.uint8 and images.shape == (1797, 64)
    assert labels.dtype == np.uint8 and labels.shape == (1797,)
    (x_tr, y_tr), (x_te, y_te) = data.load_digits(seed=3, normalize=False)
    split = _sorted_rows(np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te]))
    np.testing.assert_array_equal(split, _sorted_rows(images, labels))


def test_digits_split_reproducible_and_seed_dependent():
    (a_x, a_y), (a_xt, a_yt) = data.load_digits(seed=7)
    (b_x, b_y), (b_xt, b_yt) = data.load_digits(seed=7)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    np.testing.assert_array_equal(a_xt, b_xt)
    np.testing.assert_array_equal(a_yt, b_yt)
    (_, _), (c_xt, _) = data.load_digits(seed=8)
    assert not np.array_equal(a_xt, c_xt)
    # different seeds select different test samples, not just a different order
    key = lambda x: sorted(map(bytes, x))  # noqa: E731
    assert key(a_xt) != key(c_xt)


def test_digits_test_size():
    (x_tr, _), (x_te, _) = data.load_digits(test_size=0.1)
    assert len(x_te) == 180 and len(x_tr) == 1617


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_digits_bad_test_size(bad):
    with pytest.raises(ValueError, match="test_size"):
        data.load_digits(test_size=bad)


# ---------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 3)], ids=["1d", "3d", "2d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_idx_round_trip(tmp_path, dtype, shape, gz):
    arr = _sample(dtype, shape)
    path = write_idx(tmp_path / "arr-idx", arr, gz=gz)
    out = data.load_idx(path)
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


def test_idx_multibyte_values_are_decoded_big_endian(tmp_path):
    # 0x0102 big-endian is 258; a little-endian misread would give 513
    path = tmp_path / "x-idx1"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    np.testing.assert_array_equal(data.load_idx(path), np.array([258, -2], dtype=np.int16))


def test_idx_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gz_without_suffix = tmp_path / "plain-name-idx2-ubyte"
    gz_without_suffix.write_bytes(gzip.compress(idx_bytes(arr)))
    raw_with_suffix = tmp_path / "raw-idx2-ubyte.gz"
    raw_with_suffix.write_bytes(idx_bytes(arr))
    np.testing.assert_array_equal(data.load_idx(gz_without_suffix), arr)
    np.testing.assert_array_equal(data.load_idx(raw_with_suffix), arr)


def test_idx_accepts_str_path(tmp_path):
    arr = np.array([1, 2, 3], dtype=np.int32)
    path = write_idx(tmp_path / "s-idx1", arr)
    np.testing.assert_array_equal(data.load_idx(str(path)), arr)


def test_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(FileNotFoundError, match="nope-idx3-ubyte") as info:
        data.load_idx(path)
    assert info.value.filename == str(path)


def _valid_header(n=3):
    return bytes([0, 0, 0x08, 1]) + struct.pack(">I", n)


MALFORMED = {
    "empty": (b"", "too short"),
    "short_header": (b"\x00\x00\x08", "too short"),
    "bad_magic": (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
    "bad_magic_2": (b"\x00\x07\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
    "unknown_type": (b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x0A"),
    "dims_missing": (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "3 dimensions"),
    "truncated": (
        _valid_header(3) + b"\x01\x02",
        "expected 3 bytes of uint8 data for shape (3,), found 2",
    ),
    "trailing": (_valid_header(3) + b"\x01\x02\x03\x04\x05", "2 trailing bytes"),
    "truncated_float": (
        b"\x00\x00\x0d\x02" + struct.pack(">II", 2, 2) + b"\x00" * 15,
        "expected 16 bytes of float32 data for shape (2, 2), found 15",
    ),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_idx_malformed(tmp_path, case, gz):
    payload, fragment = MALFORMED[case]
    path = tmp_path / f"broken-{case}-ubyte"
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(DataError) as info:
        data.load_idx(path)
    msg = str(info.value)
    assert f"broken-{case}-ubyte" in msg
    assert fragment in msg


def test_idx_truncated_message_matches_documented_form(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 28, 28) + b"\x00" * 1000)
    with pytest.raises(DataError) as info:
        data.load_idx(path)
    assert str(info.value).endswith(
        "train-images-idx3-ubyte: expected 47040000 bytes of uint8 data for shape "
        "(60000, 28, 28), found 1000"
    )


def test_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut-idx1-ubyte\.gz.*gzip"):
        data.load_idx(path)


# ---------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------


def _mnist_arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[0, 0, 1] = 0
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("sep", ["-", "."], ids=["dash", "dot"])
@pytest.mark.parametrize(("kind", "prefix"), [("train", "train"), ("test", "t10k")])
def test_load_mnist(tmp_path, kind, prefix, sep, gz):
    images, labels = _mnist_arrays(5)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, gz=gz)
    write_idx(tmp_path / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, gz=gz)
    x, y = data.load_mnist(tmp_path, kind=kind)
    assert x.shape == (5, 784) and x.dtype == np.float32
    assert y.shape == (5,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x, images.reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_train_and_test_are_separate(tmp_path):
    tr_images, tr_labels = _mnist_arrays(5, seed=1)
    te_images, te_labels = _mnist_arrays(3, seed=2)
    write_idx(tmp_path / "train-images-idx3-ubyte", tr_images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", tr_labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", te_images, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", te_labels, gz=True)
    _, y_tr = data.load_mnist(tmp_path)
    x_te, y_te = data.load_mnist(str(tmp_path), kind="test")
    np.testing.assert_array_equal(y_tr, tr_labels)
    np.testing.assert_array_equal(y_te, te_labels)
    assert x_te.shape == (3, 784)


def test_load_mnist_count_mismatch(tmp_path):
    images, labels = _mnist_arrays(5)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:4])
    with pytest.raises(DataError, match=r"5 images.*4 labels"):
        data.load_mnist(tmp_path)


def test_load_mnist_bad_kind(tmp_path):
    with pytest.raises(ValueError, match=r"'train', 'test'.*'validation'"):
        data.load_mnist(tmp_path, kind="validation")


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="images"):
        data.load_mnist(tmp_path)
    images, _ = _mnist_arrays(2)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    with pytest.raises(FileNotFoundError, match="labels"):
        data.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError):
        data.load_mnist(tmp_path / "does-not-exist")


def test_load_mnist_wrong_image_rank(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 784), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*3-D"):
        data.load_mnist(tmp_path)


def test_load_mnist_malformed_file_names_file(tmp_path):
    images, labels = _mnist_arrays(5)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images)[:-10])
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="train-images-idx3-ubyte: expected 3920 bytes"):
        data.load_mnist(tmp_path)


# ---------------------------------------------------------------------------
# Synthetic data sets
# ---------------------------------------------------------------------------


def test_spirals():
    x, y = data.make_spirals(n=301, classes=4, noise=0.1, seed=1)
    assert x.shape == (301, 2) and x.dtype == np.float32
    assert y.shape == (301,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [76, 75, 75, 75])
    assert np.all(np.hypot(x[:, 0], x[:, 1]) <= 1.0 + 1e-6)
    x2, y2 = data.make_spirals(n=301, classes=4, noise=0.1, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = data.make_spirals(n=301, classes=4, noise=0.1, seed=2)
    assert not np.array_equal(x, x3)


def test_spirals_defaults_and_noiseless_geometry():
    x, y = data.make_spirals()
    assert x.shape == (300, 2)
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])
    # without noise, a point of class k at radius r has angle 4k + 4r (mod 2 pi)
    x, y = data.make_spirals(n=30, classes=3, noise=0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    t = np.arctan2(x[:, 0], x[:, 1])
    diff = np.angle(np.exp(1j * (t - (4.0 * y + 4.0 * r))))
    assert np.all(np.abs(diff[r > 1e-3]) < 1e-4)


def test_xor():
    x, y = data.make_xor(n=500, noise=0.3, seed=4)
    assert x.shape == (500, 2) and x.dtype == np.float32
    assert y.shape == (500,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.logical_xor(x[:, 0] > 0, x[:, 1] > 0).astype(np.int64))
    assert set(np.unique(y).tolist()) == {0, 1}
    # all four quadrants are populated
    quadrants = (x[:, 0] > 0).astype(int) * 2 + (x[:, 1] > 0).astype(int)
    assert np.all(np.bincount(quadrants, minlength=4) > 50)
    x2, y2 = data.make_xor(n=500, noise=0.3, seed=4)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, data.make_xor(n=500, noise=0.3, seed=5)[0])


def test_linear_regression():
    x, y, w, b = data.make_linear_regression(n=400, features=5, noise=0.05, seed=2)
    assert x.shape == (400, 5) and y.shape == (400, 1)
    assert w.shape == (5, 1) and b.shape == (1,)
    assert {a.dtype for a in (x, y, w, b)} == {np.dtype(np.float32)}
    residual = y - (x @ w + b)
    assert 0.03 < residual.std() < 0.07
    # least squares recovers the true parameters
    design = np.hstack([x, np.ones((400, 1), dtype=np.float32)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    np.testing.assert_allclose(coef[:5], w, atol=0.02)
    np.testing.assert_allclose(coef[5], b, atol=0.02)
    again = data.make_linear_regression(n=400, features=5, noise=0.05, seed=2)
    for a, a2 in zip((x, y, w, b), again, strict=True):
        np.testing.assert_array_equal(a, a2)
    # noise=0 gives an exact linear relation
    x, y, w, b = data.make_linear_regression(noise=0.0)
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-5, atol=1e-5)


def test_logistic_regression():
    x, y = data.make_logistic_regression(n=1000, features=3, seed=5)
    assert x.shape == (1000, 3) and x.dtype == np.float32
    assert y.shape == (1000,) and y.dtype == np.int64
    assert set(np.unique(y).tolist()) == {0, 1}
    assert 0.2 < y.mean() < 0.8
    # nearly separable: least squares on +-1 targets already classifies most points
    design = np.hstack([x, np.ones((1000, 1))])
    coef, *_ = np.linalg.lstsq(design, 2.0 * y - 1.0, rcond=None)
    accuracy = np.mean((design @ coef > 0) == (y == 1))
    assert accuracy > 0.9
    x2, y2 = data.make_logistic_regression(n=1000, features=3, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize(
    "call",
    [
        lambda: data.make_spirals(n=0),
        lambda: data.make_spirals(classes=0),
        lambda: data.make_spirals(noise=-1.0),
        lambda: data.make_xor(n=0),
        lambda: data.make_linear_regression(features=0),
        lambda: data.make_logistic_regression(n=-3),
    ],
)
def test_synthetic_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def test_standardize():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 10.0]).astype(np.float32)
    x[:, 2] = 7.0  # constant column
    z, mean, std = data.standardize(x)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z[:, 2], 0.0)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-6)
    assert std[2] == 1.0
    # reuse the statistics on new data
    x_new = x[:10] + 1.0
    z_new, mean2, std2 = data.standardize(x_new, mean, std)
    np.testing.assert_allclose(z_new, (x_new - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(std2, std)


def test_standardize_dtypes():
    z, mean, std = data.standardize(np.array([[1, 2], [3, 2]]))
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(mean, [2.0, 2.0])
    np.testing.assert_array_equal(std, [1.0, 1.0])
    z64, _, _ = data.standardize(np.array([[1.0], [2.0]]))
    assert z64.dtype == np.float64


def test_one_hot():
    out = data.one_hot([2, 0, 1, 2])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    out = data.one_hot(np.array([1], dtype=np.uint8), num_classes=4, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0, 1, 0, 0]])
    np.testing.assert_array_equal(data.one_hot(np.array([1.0, 0.0])), [[0, 1], [1, 0]])
    assert data.one_hot(np.array([[0, 1]]), 2).shape == (1, 2, 2)


@pytest.mark.parametrize(
    ("labels", "num_classes", "pattern"),
    [
        ([0, 3, 1], 3, r"label 3 at index 1 .*\[0, 3\)"),
        ([0, -1], 3, r"label -1 at index 1 .*\[0, 3\)"),
        ([-2], None, r"label -2 at index 0 .*range"),
        ([0.0, 1.5], 3, r"label 1\.5 at index 1 .*not an integer"),
        (np.array([0.0, np.nan]), 3, r"label nan at index 1"),
        (np.array(["a"]), 3, "integers"),
    ],
)
def test_one_hot_bad_labels(labels, num_classes, pattern):
    with pytest.raises(LabelError, match=pattern):
        data.one_hot(labels, num_classes)


def test_one_hot_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        data.one_hot([0], 0)


def test_train_val_split_partition_and_determinism():
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25)
    (x_tr, y_tr), (x_va, y_va) = data.train_val_split(x, y, val_fraction=0.2, seed=1)
    assert len(y_va) == 5 and len(y_tr) == 20
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_va])), y)
    np.testing.assert_array_equal(x_tr[:, 0], 2 * y_tr)  # rows stay aligned
    np.testing.assert_array_equal(x_va[:, 0], 2 * y_va)
    (_, y_tr2), (_, y_va2) = data.train_val_split(x, y, val_fraction=0.2, seed=1)
    np.testing.assert_array_equal(y_tr, y_tr2)
    np.testing.assert_array_equal(y_va, y_va2)
    (_, _), (_, y_va3) = data.train_val_split(x, y, val_fraction=0.2, seed=2)
    assert set(y_va3.tolist()) != set(y_va.tolist())


def test_train_val_split_stratified():
    y = np.repeat([0, 1, 2], [60, 30, 10])
    x = np.arange(100, dtype=np.float32)[:, None]
    (_, y_tr), (x_va, y_va) = data.train_val_split(x, y, val_fraction=0.1, stratify=True)
    np.testing.assert_array_equal(np.bincount(y_va), [6, 3, 1])
    np.testing.assert_array_equal(np.bincount(y_tr), [54, 27, 9])
    np.testing.assert_array_equal(y[x_va[:, 0].astype(int)], y_va)


def test_train_val_split_errors():
    with pytest.raises(ShapeError, match=r"5 samples.*4"):
        data.train_val_split(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(np.zeros((5, 2)), np.zeros(5), val_fraction=1.0)
    with pytest.raises(ShapeError, match="1-D"):
        data.train_val_split(np.zeros((5, 2)), np.zeros((5, 3)), stratify=True)
    with pytest.raises(ValueError, match="at least 2"):
        data.train_val_split(np.zeros((1, 2)), np.zeros(1))


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (10, 5), (10, 10), (10, 64), (1, 1)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_index_once(n, batch_size, shuffle):
    out = list(data.batches(n, batch_size, shuffle=shuffle, seed=0))
    sizes = [len(b) for b in out]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    flat = np.concatenate(out)
    assert flat.dtype == np.int64
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))
    if not shuffle:
        np.testing.assert_array_equal(flat, np.arange(n))


def test_batches_shuffle_and_seed():
    a = np.concatenate(list(data.batches(100, 7, seed=3)))
    b = np.concatenate(list(data.batches(100, 7, seed=3)))
    c = np.concatenate(list(data.batches(100, 7, seed=4)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.arange(100))
    rng = np.random.default_rng(0)
    e1 = np.concatenate(list(data.batches(100, 7, seed=rng)))
    e2 = np.concatenate(list(data.batches(100, 7, seed=rng)))
    assert not np.array_equal(e1, e2)  # one generator, a new order each epoch


def test_batches_full_batch_and_empty():
    (only,) = list(data.batches(6, None, shuffle=False))
    np.testing.assert_array_equal(only, np.arange(6))
    assert list(data.batches(0, 4)) == []
    assert list(data.batches(0, None)) == []


@pytest.mark.parametrize("bad", [0, -1])
def test_batches_bad_batch_size_raises_eagerly(bad):
    with pytest.raises(ValueError, match="batch_size"):
        data.batches(10, bad)  # no iteration needed
    with pytest.raises(ValueError, match="n must be"):
        data.batches(-1, 2)
