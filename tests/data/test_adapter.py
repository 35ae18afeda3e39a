"""The data boundary of fit, evaluate and predict (arrayprop.data.adapter).

Data is checked once per call, whatever happens after: one host pass over each array (whether
the set then sits on the device or streams to it in chunks, for every epoch), or one device
reduction read back once. The batches it hands out cover every sample once, in the order given.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import validation
from arrayprop.data.adapter import Expect, gather_rows, host_array, prepare
from arrayprop.errors import BackendMismatchError, DataError, ShapeError
from helpers import count_to_host

FEATURES, CLASSES, N = 5, 3, 40
PLACEMENTS = ["resident", "streamed"]


def _budget(placement: str, itemsize: int = 8, targets: bool = False) -> int:
    """Big enough for the whole set, or small enough that it streams in chunks of 8 rows."""
    if placement == "resident":
        return 2**30
    row_bytes = FEATURES * itemsize + (CLASSES * itemsize if targets else 8)
    return 3 * 8 * row_bytes + 8 * N + 10


def _host_data(tmp_path, targets: bool = False):
    """x (N, FEATURES) float64 and labels (or target rows) as read-only memmaps: host data on
    every backend (a plain NumPy array is the numpy backend's own)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, FEATURES))
    y = rng.standard_normal((N, CLASSES)) if targets else rng.integers(0, CLASSES, N)
    for name, a in (("x", x), ("y", y)):
        np.save(tmp_path / f"{name}.npy", a)
    return (np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in ("x", "y"))


def _spy_scans(monkeypatch):
    """Count the passes over data: every check_finite call, wherever it comes from, decides
    through validation.cast_limit (once) what to look for; labels have their own check."""
    scans = {"finite": 0, "labels": 0}
    cast_limit, labels = validation.cast_limit, validation.check_class_labels

    def count_finite(*args):
        scans["finite"] += 1
        return cast_limit(*args)

    def count_labels(*args):
        scans["labels"] += 1
        return labels(*args)

    monkeypatch.setattr(validation, "cast_limit", count_finite)
    monkeypatch.setattr(validation, "check_class_labels", count_labels)
    return scans


def _fit(model, x, y, budget, **kw):
    kw.setdefault("loss", "softmax-ce")
    return ap.fit(model, x, y, optimizer="sgd", epochs=3, batch_size=8, progress=None, seed=0,
                  max_device_bytes=budget, **kw)  # fmt: skip


# float32: the float64 data is cast on its way to the device, so a range scan per chunk would
# show here; float64: the scan looks for NaN and infinity only.
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_host_data_is_scanned_once_per_fit(backend, tmp_path, monkeypatch, placement, dtype):
    x, y = _host_data(tmp_path)
    model = ap.mlp([FEATURES, 4, CLASSES], seed=0, backend=backend.with_dtype(dtype))
    budget = _budget(placement, np.dtype(dtype).itemsize)
    scans = _spy_scans(monkeypatch)
    reads = count_to_host(monkeypatch)
    _fit(model, x, y, budget)
    assert scans == {"finite": 1, "labels": 1}  # one pass over x, one over the labels
    assert len(reads) == 3  # one per epoch: no read for the checks of host data
    scans.update(finite=0, labels=0)
    _fit(model, x, y, budget, validation_data=(x, y))
    assert scans == {"finite": 2, "labels": 2}  # the validation set once too, not per epoch


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_host_targets_are_scanned_once_per_fit(backend32, tmp_path, monkeypatch, placement):
    x, y = _host_data(tmp_path, targets=True)
    model = ap.mlp([FEATURES, 4, CLASSES], seed=0, backend=backend32)
    scans = _spy_scans(monkeypatch)
    _fit(model, x, y, _budget(placement, 4, targets=True), loss="mse", metrics=None)
    assert scans == {"finite": 2, "labels": 0}


def test_device_data_is_checked_with_one_read(backend, monkeypatch):
    rng = np.random.default_rng(1)
    x = backend.asarray(rng.standard_normal((N, FEATURES)))
    y = backend.asarray(rng.integers(0, CLASSES, N))
    model = ap.mlp([FEATURES, 4, CLASSES], seed=0, backend=backend)
    host_checks = []
    monkeypatch.setattr(validation, "check_finite", lambda *a, **k: host_checks.append(a))
    reads = count_to_host(monkeypatch)
    _fit(model, x, y, _budget("resident"))
    assert len(reads) == 1 + 3  # the checks of x and y together, then one per epoch
    assert reads[0] == ()  # a 0-d flag, not the data
    assert host_checks == []  # the host twin runs only when the flag says something is wrong


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_batches_cover_the_set_in_the_given_order(tmp_path, placement):
    x, y = _host_data(tmp_path)
    be = ap.get_backend("numpy", dtype="float64")
    d = prepare(be, x, y, Expect(FEATURES, CLASSES, "Dense"), what="t", budget=_budget(placement))
    assert d.resident == (placement == "resident")
    assert d.chunk_rows(8) % 8 == 0
    order = np.random.default_rng(3).permutation(N)
    for batch, start in [(8, 0), (6, 0), (8, 16), (N, 0)]:
        got = [(be.to_host(xb), be.to_host(yb)) for xb, yb in d.batches(batch, order, start)]
        assert [len(g[0]) for g in got] == [min(batch, N - s) for s in range(start, N, batch)]
        rows = order[start:]
        np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), x[rows])
        np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), y[rows])
    chunks = list(d.chunks(8))
    np.testing.assert_array_equal(np.concatenate([be.to_host(c) for c, _ in chunks]), x)
    assert len(chunks) == (1 if d.resident else N // d.chunk_rows(8))


def test_predict_data_has_no_targets(backend):
    x = np.ones((7, FEATURES))
    d = prepare(backend, x, None, Expect(FEATURES, CLASSES, "Dense"), what="predict", budget=2**20)
    assert d.y is None
    assert [yb for _, yb in d.batches(4)] == [None, None]


def test_host_array_refuses_arrays_of_device_libraries():
    strict = ap.get_backend("array_api_strict")
    with pytest.raises(BackendMismatchError, match=r"^fit: x: got a array_api_strict\.Array"):
        host_array(strict.asarray(np.ones(3)), "fit: x")
    a = np.ones(3)  # NumPy arrays pass uncopied
    assert host_array(a, "x") is a
    np.testing.assert_array_equal(host_array([[1, 2]], "x"), np.array([[1, 2]]))


# -- N-D data: x (n, ...), only the declared widths are checked ---------------------------------


def test_gather_rows_takes_whole_rows_of_nd_memmaps(tmp_path):
    x = np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for rows, want in [(slice(1, 4), x[1:4]), (np.array([4, 0, 5]), x[[4, 0, 5]])]:
        got = gather_rows(mm, rows)
        assert type(got) is np.ndarray and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)


def test_prepare_without_declared_widths_checks_only_the_samples():
    be = ap.get_backend("numpy", dtype="float64")
    free = Expect(None, None, "Net")
    x, t = np.ones((5, 7, 2)), np.zeros((5, 3))
    d = prepare(be, x, t, Expect(None, None, "Net", "MSE()"), what="fit", budget=2**20)
    assert (d.n, d.labels, d.outputs, d.row_bytes) == (5, False, None, (14 + 3) * 8)
    assert tuple(d.y.shape) == (5, 3)  # taken as they are: the loss compares them
    d = prepare(be, np.ones(4), None, free, what="predict", budget=2**20)
    assert (d.n, d.row_bytes) == (4, 8)
    with pytest.raises(ShapeError, match=r"^predict: x must have shape \(n, \.\.\.\), got \(\)$"):
        prepare(be, np.float64(1.0), None, free, what="predict", budget=2**20)
    with pytest.raises(DataError, match=r"^fit: x is empty \(0 samples\)$"):
        prepare(be, np.ones((0, 3, 2)), None, free, what="fit", budget=2**20)
    with pytest.raises(
        ShapeError, match=r"^fit: y has shape \(5,\) \(class labels\) but the model "
    ):
        prepare(be, x, np.zeros(5, dtype=np.int64), free, what="fit", budget=2**20)


def test_prepare_checks_the_last_axis_of_nd_data_against_the_declared_widths():
    be = ap.get_backend("numpy", dtype="float64")
    expect = Expect(2, 3, "Dense(2, 3)")
    d = prepare(
        be, np.ones((4, 7, 2)), np.zeros(4, dtype=np.int64), expect, what="fit", budget=2**20
    )
    assert (d.labels, d.row_bytes) == (True, 14 * 8 + 8)
    with pytest.raises(
        ShapeError,
        match=r"^fit: x has 5 features along its last axis but the model's first layer "
        r"Dense\(2, 3\) expects 2; expected x of shape \(n, \.\.\., 2\), got \(4, 7, 5\)$",
    ):
        prepare(be, np.ones((4, 7, 5)), None, expect, what="fit", budget=2**20)
    d = prepare(be, np.ones((4, 7, 2)), np.ones((4, 7, 3)), expect, what="fit", budget=2**20)
    assert (d.labels, d.row_bytes) == (False, (14 + 21) * 8)
    with pytest.raises(ShapeError, match=r"^fit: y must have shape \(4, \.\.\., 3\) "):
        prepare(be, np.ones((4, 7, 2)), np.ones((4, 7, 2)), expect, what="fit", budget=2**20)
