"""CudaGraphStep's control flow, on NumPy with a stand-in for CuPy's stream capture.

The stand-in's ``capture`` records the step function without running it (as a real capture
records kernels without executing them) and ``launch`` runs it, so a "graph" replay computes
exactly what an eager step would on the static buffers. Every test compares with plain
``train_step`` on an identical model. The real capture is exercised in tests/backends/test_cupy.py.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.errors import BackendUnavailableError, DTypeError, ShapeError
from arrayprop.training.cuda_graph import CudaGraphStep


class FakeCapture:
    """``mode="record"``: capture records only. ``mode="replaces"``: capture also runs the
    step's Python code with the portable kernels, which replace the parameter arrays instead
    of writing into them (their old values stay untouched, as in a real, unexecuted capture)."""

    def __init__(self, mode: str = "record", fail: Exception | None = None) -> None:
        self.mode, self.fail = mode, fail
        self.captures = self.launches = self.side = 0
        self.optimizer = None  # set by _graph_step

    @contextmanager
    def side_stream(self):
        self.side += 1
        yield

    def capture(self, fn):
        self.captures += 1
        if self.fail is not None:
            raise self.fail
        if self.mode == "replaces":
            with kernels.use_portable():
                fn()
        return fn

    def launch(self, graph):
        # A real replay runs no Python: keep the step's host-side counter as it was.
        self.launches += 1
        steps = self.optimizer.steps
        graph()
        self.optimizer.steps = steps

    def copy(self, dst, src):
        dst[...] = src

    def ptr(self, x):
        return id(x)


N, BATCH, FEATURES, CLASSES = 50, 16, 6, 3  # batches of 16, 16, 16 and a partial 2


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, FEATURES)), rng.integers(0, CLASSES, size=N)


def _setup(lr=0.1, optimizer=ap.SGD):
    model = ap.mlp([FEATURES, 8, CLASSES], seed=1, backend="numpy", dtype="float64")
    return model, ap.SoftmaxCrossEntropy(), optimizer(model.parameters(), lr=lr)


def _batches(x, y):
    for i in range(0, N, BATCH):
        yield x[i : i + BATCH], y[i : i + BATCH]


def _train(step, x, y, epochs=3):
    return [float(step(xb, yb)) for _ in range(epochs) for xb, yb in _batches(x, y)]


def _graph_step(capture=None, warmup=2, lr=0.1, optimizer=ap.SGD, **kw):
    model, loss, opt = _setup(lr, optimizer)
    capture = capture or FakeCapture()
    capture.optimizer = opt
    step = CudaGraphStep(
        model, loss, opt, (BATCH, FEATURES), (BATCH,), warmup=warmup, capture=capture, **kw
    )
    return step, model, opt


def _reference(epochs=3, lr=0.1):
    model, loss, opt = _setup(lr)
    x, y = _data()
    losses = _train(lambda a, b: ap.train_step(model, loss, opt, a, b), x, y, epochs)
    return losses, model


def _assert_same_model(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-15)


def test_needs_the_cupy_backend():
    model, loss, opt = _setup()
    with pytest.raises(BackendUnavailableError, match=r"need the 'cupy' backend.*numpy"):
        CudaGraphStep(model, loss, opt, (BATCH, FEATURES), (BATCH,))


def test_graph_steps_train_like_eager_steps_and_partial_batches_run_eagerly():
    fake = FakeCapture()
    step, model, opt = _graph_step(fake)
    x, y = _data()
    losses = _train(step, x, y)
    ref_losses, ref_model = _reference()
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    _assert_same_model(model, ref_model)
    # 12 steps: 9 full batches (2 warm-up, then 7 replays after one capture), 3 partial ones.
    assert step.captured and step.reason is None
    assert (step.captures, fake.captures) == (1, 1)
    assert (step.graph_steps, fake.launches) == (7, 7)
    assert step.eager_steps == 2 + 3
    assert fake.side == 2  # the warm-up steps ran on the capture stream
    assert opt.steps == 12


def test_replay_returns_the_static_loss_buffer():
    step, _, _ = _graph_step(warmup=0)
    x, y = _data()
    value = step(x[:BATCH], y[:BATCH])
    assert value is step.loss_value
    np.testing.assert_array_equal(step.x, x[:BATCH])
    np.testing.assert_array_equal(step.y, y[:BATCH])


def test_failed_capture_falls_back_to_eager_steps():
    error = RuntimeError("operation not permitted when stream is capturing")
    step, model, _ = _graph_step(FakeCapture(fail=error))
    x, y = _data()
    losses = _train(step, x, y)
    ref_losses, ref_model = _reference()
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    _assert_same_model(model, ref_model)
    assert not step.captured
    assert "capture failed: RuntimeError: operation not permitted" in step.reason
    assert step.captures == 0 and step.graph_steps == 0 and step.eager_steps == 12


class _NoCublas:
    """A backend whose capture machinery cannot be set up, as CuPy's when libcublas does not
    open through ctypes (CublasGemm raises OSError while the capture is built)."""

    def __init__(self):
        self.attempts = 0

    def __call__(self, *_):  # set on the class: called without the backend instance
        self.attempts += 1
        raise OSError("cannot open cuBLAS through ctypes (tried libcublas.so.12)")


def test_unloadable_cublas_falls_back_to_eager_steps_from_the_constructor(monkeypatch):
    no_cublas = _NoCublas()
    model, loss, opt = _setup()
    monkeypatch.setattr(type(model.backend), "graph_capture", no_cublas)
    step = CudaGraphStep(model, loss, opt, (BATCH, FEATURES), (BATCH,))  # no exception
    assert not step.captured
    assert step.reason == (
        "capture unavailable: OSError: cannot open cuBLAS through ctypes (tried libcublas.so.12)"
    )
    x, y = _data()
    losses = _train(step, x, y)
    ref_losses, ref_model = _reference()
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    _assert_same_model(model, ref_model)
    assert step.eager_steps == 12 and step.graph_steps == 0 and step.captures == 0
    step.reset()  # tries to set the capture up again, and still cannot
    assert no_cublas.attempts == 2 and step.reason.startswith("capture unavailable: OSError")
    step(x[:BATCH], y[:BATCH])
    assert step.eager_steps == 13


def test_unloadable_cublas_raises_in_strict_mode(monkeypatch):
    model, loss, opt = _setup()
    monkeypatch.setattr(type(model.backend), "graph_capture", _NoCublas())
    with pytest.raises(RuntimeError, match="CudaGraphStep: capture unavailable: OSError"):
        CudaGraphStep(model, loss, opt, (BATCH, FEATURES), (BATCH,), strict=True)


def test_reset_allows_another_capture_after_a_failure():
    fake = FakeCapture(fail=RuntimeError("boom"))
    step, _, _ = _graph_step(fake, warmup=0)
    x, y = _data()
    step(x[:BATCH], y[:BATCH])
    assert not step.captured and step.reason
    fake.fail = None
    step.reset()
    step(x[:BATCH], y[:BATCH])
    assert step.captured and step.reason is None and step.captures == 1


def test_strict_mode_raises_when_capture_fails():
    step, _, _ = _graph_step(FakeCapture(fail=RuntimeError("boom")), warmup=0, strict=True)
    x, y = _data()
    with pytest.raises(RuntimeError, match="CudaGraphStep: capture failed: RuntimeError: boom"):
        step(x[:BATCH], y[:BATCH])


def test_a_step_that_replaces_parameter_arrays_is_not_replayed():
    step, model, opt = _graph_step(FakeCapture(mode="replaces"))
    x, y = _data()
    losses = _train(step, x, y)
    ref_losses, ref_model = _reference()
    # The capture's Python side effects were undone: training continues exactly as eager.
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    _assert_same_model(model, ref_model)
    assert not step.captured and "in place" in step.reason
    assert opt.steps == 12


class _NotCapturable(ap.SGD):
    capturable = False


class _Capturable(ap.Optimizer):
    capturable = True

    def _update(self, i, w, g):
        w -= 0.1 * g
        return w


def test_optimizers_must_be_known_to_be_capturable():
    step, _, _ = _graph_step(optimizer=_NotCapturable, warmup=0)
    x, y = _data()
    step(x[:BATCH], y[:BATCH])
    assert not step.captured and "_NotCapturable is not known to be capturable" in step.reason
    step, _, _ = _graph_step(optimizer=_Capturable, warmup=0)
    step(x[:BATCH], y[:BATCH])
    assert step.captured


def test_a_learning_rate_change_captures_again():
    fake = FakeCapture()
    step, model, opt = _graph_step(fake)
    ref_model, ref_loss, ref_opt = _setup()
    x, y = _data()
    for epoch in range(3):
        opt.lr = ref_opt.lr = 0.1 / (epoch + 1)
        for xb, yb in _batches(x, y):
            a = float(step(xb, yb))
            b = float(ap.train_step(ref_model, ref_loss, ref_opt, xb, yb))
            assert a == pytest.approx(b, rel=1e-12)
    _assert_same_model(model, ref_model)
    assert step.captures == fake.captures == 3


def test_arrays_replaced_by_an_eager_step_are_copied_back_into_the_graph():
    step, model, _ = _graph_step(warmup=0)
    ref_model, ref_loss, ref_opt = _setup()
    x, y = _data()
    captured_w = None
    batches = list(_batches(x, y))
    for i, (xb, yb) in enumerate(batches * 2 + batches[:1]):  # ends on a full batch
        portable = len(xb) < BATCH  # the partial batch replaces the weight arrays
        with kernels.use_portable(portable):
            a = float(step(xb, yb))
            b = float(ap.train_step(ref_model, ref_loss, ref_opt, xb, yb))
        assert a == pytest.approx(b, rel=1e-12), i
        if captured_w is None:
            captured_w = model.parameters()[0].data
    _assert_same_model(model, ref_model)
    assert model.parameters()[0].data is captured_w  # the graph's buffer is in use again


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "match"),
    [
        ((BATCH,), (BATCH,), "x_shape must be 2 positive ints"),
        ((BATCH, 0), (BATCH,), "x_shape must be 2 positive ints"),
        ((BATCH, FEATURES), (BATCH + 1,), r"y_shape \(17,\) must have the batch size 16"),
        ("ab", (BATCH,), "x_shape must be a tuple of ints"),
    ],
)
def test_bad_shapes_are_rejected(x_shape, y_shape, match):
    model, loss, opt = _setup()
    with pytest.raises(ShapeError, match=match):
        CudaGraphStep(model, loss, opt, x_shape, y_shape, capture=FakeCapture())


def test_inputs_and_targets_of_another_kind_are_rejected():
    step, _, _ = _graph_step()
    x, y = _data()
    with pytest.raises(DTypeError, match="captured x float64, y int64; got x float64, y float64"):
        step(x[:BATCH], y[:BATCH].astype(np.float64))
    with pytest.raises(DTypeError, match="got x float32, y int64"):
        step(x[:BATCH].astype(np.float32), y[:BATCH])


def test_narrower_integer_labels_are_accepted():
    step, model, _ = _graph_step(warmup=0)
    ref_losses, ref_model = _reference(epochs=1)
    x, y = _data()
    losses = _train(step, x, y.astype(np.int32), epochs=1)
    assert step.captured
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    _assert_same_model(model, ref_model)


def test_float_targets_default_to_the_model_dtype():
    model, _, opt = _setup()
    step = CudaGraphStep(
        model, ap.MSE(), opt, (BATCH, FEATURES), (BATCH, CLASSES), capture=FakeCapture()
    )
    assert step.y.dtype == np.float64 and step.y.shape == (BATCH, CLASSES)


# --------------------------------------------------------------------------- the capture GEMM


class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


class _DeviceLike(np.ndarray):
    """A host array with CuPy's ``x.data.ptr``."""

    @property
    def data(self):
        return _Pointer(self.ctypes.data)


_CUDA_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16}  # cudaDataType values


class _FakeCublas:
    """cublasGemmEx with cuBLAS's column-major semantics, on host memory."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def _matrix(ptr, rows, cols, ld, dtype):
        # Column-major: element (i, j) lives at ptr + (i + j * ld) * itemsize.
        item = np.dtype(dtype).itemsize
        n = (cols - 1) * ld + rows
        flat = np.frombuffer((ctypes.c_char * (n * item)).from_address(ptr), dtype=dtype)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))

    def cublasGemmEx(self, handle, ta, tb, m, n, k, alpha, a, at, lda, b, bt, ldb, beta, c, ct,
                     ldc, compute, algo):  # fmt: skip
        assert at == bt == ct and lda >= 1 and ldb >= 1 and ldc >= m
        self.calls.append(compute)
        dtype = _CUDA_DTYPES[at]
        scalar = ctypes.c_double if compute == 70 else ctypes.c_float
        alpha, beta = scalar.from_address(alpha).value, scalar.from_address(beta).value
        op_a = self._matrix(a, m, k, lda, dtype) if ta == 0 else self._matrix(a, k, m, lda, dtype).T
        op_b = self._matrix(b, k, n, ldb, dtype) if tb == 0 else self._matrix(b, n, k, ldb, dtype).T
        out = self._matrix(c, m, n, ldc, dtype)
        product = alpha * (op_a.astype(np.float64) @ op_b)
        out[...] = product if beta == 0 else product + beta * out  # beta = 0: C is not read
        return 0


@pytest.fixture
def host_gemm(monkeypatch):
    """backends.cupy.cublas.CublasGemm on host memory: fake cuBLAS, a stand-in cupy module."""
    import sys
    import types

    from arrayprop.backends.cupy.cublas import CublasGemm

    fake = types.ModuleType("cupy")
    fake.empty = lambda shape, dtype: np.empty(shape, dtype).view(_DeviceLike)
    fake.ascontiguousarray = lambda x: np.ascontiguousarray(x).view(_DeviceLike)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    gemm = CublasGemm.__new__(CublasGemm)  # no handle, no library: only __call__ is used
    gemm._lib, gemm._handle = _FakeCublas(), None
    return gemm


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", ["cc", "cf", "fc", "ff", "strided", "vector"])
def test_capture_gemm_maps_row_major_operands_to_column_major_cublas(host_gemm, dtype, layout):
    rng = np.random.default_rng(3)
    m, k, n = (1, 5, 4) if layout == "vector" else (7, 5, 4)
    a = rng.normal(size=(m, k)).astype(dtype)
    b = rng.normal(size=(k, n)).astype(dtype)
    if layout[0] == "f":
        a = np.asfortranarray(a)
    if layout[1:] == "f":
        b = np.asfortranarray(b)
    if layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]  # neither C- nor F-contiguous: copied first
    c = host_gemm(a.view(_DeviceLike), b.view(_DeviceLike))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    assert c.shape == (m, n) and c.dtype == dtype and c.flags.c_contiguous
    tol = {np.float64: 1e-12, np.float32: 1e-5, np.float16: 2e-3}[dtype]
    np.testing.assert_allclose(c.astype(np.float64), expected, rtol=tol, atol=tol)
    compute = 70 if dtype == np.float64 else 68
    assert host_gemm._lib.calls == [compute]


def test_capture_gemm_of_a_transposed_view_uses_the_buffer_in_place(host_gemm):
    # Dense.backward multiplies xᵀ δ and δ Wᵀ: transposed views, passed without copies.
    rng = np.random.default_rng(4)
    x, delta = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    x_dev, d_dev = x.view(_DeviceLike), delta.view(_DeviceLike)
    np.testing.assert_allclose(host_gemm(x_dev.T, d_dev), x.T @ delta, rtol=1e-12)
    np.testing.assert_allclose(host_gemm(d_dev, d_dev.T), delta @ delta.T, rtol=1e-12)


def test_capture_gemm_rejects_mismatched_operands(host_gemm):
    a = np.zeros((2, 3)).view(_DeviceLike)
    with pytest.raises(ShapeError, match=r"need \(m, k\) @ \(k, n\)"):
        host_gemm(a, a)
