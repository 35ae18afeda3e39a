"""The CuPy fast paths, CUDA-graph steps and mixed precision on a real CUDA device.

Skipped unless CuPy imports and sees a GPU. Every fused kernel is compared with the portable
Array API version computed by CuPy on the same device (float64 to 1e-12, float32 to 1e-5
relative), in-place semantics are checked on device pointers, and whole training runs are
compared with NumPy (eager) and with eager CuPy (graph replays).
"""

from __future__ import annotations

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    _DEVICES = cupy.cuda.runtime.getDeviceCount()
except Exception:  # CUDA driver missing or broken: same as no device
    _DEVICES = 0
if _DEVICES == 0:
    pytest.skip("CuPy is installed but no CUDA device is usable", allow_module_level=True)

import arrayprop as ap  # noqa: E402
from arrayprop import kernels  # noqa: E402
from arrayprop.backends.cupy import kernels as cupy_fast  # noqa: E402
from arrayprop.backends.cupy.cublas import CublasGemm  # noqa: E402
from arrayprop.kernels import portable  # noqa: E402
from arrayprop.training.cuda_graph import CudaGraphStep  # noqa: E402
from arrayprop.training.precision import MixedPrecision, tf32  # noqa: E402

DTYPES = ["float64", "float32", "float16"]
RTOL = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}
KINDS = portable.ACTIVATIONS


@pytest.fixture(autouse=True)
def _fast_paths(monkeypatch):
    """Compare the CuPy kernels even when the suite runs with ARRAYPROP_KERNELS=portable."""
    monkeypatch.setitem(kernels._state, "portable", False)


def _be(dtype="float64"):
    return ap.get_backend("cupy", dtype=dtype)


def _rand(be, shape, seed=0, scale=3.0):
    host = np.random.default_rng(seed).normal(size=shape) * scale
    if len(shape) == 2:
        host[0, :3] = [0.0, -40.0, 40.0]  # zero and saturating inputs
    return be.asarray(host)


def _close(be, actual, expected, dtype):
    assert actual.dtype == expected.dtype == getattr(cupy, dtype)
    a, e = be.to_host(actual).astype(np.float64), be.to_host(expected).astype(np.float64)
    np.testing.assert_allclose(a, e, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_the_cupy_backend_dispatches_to_cupy_fast():
    assert kernels._fast(_be()) is cupy_fast
    with kernels.use_portable():
        assert kernels._fast(_be()) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_activation(dtype, kind, inplace):
    be = _be(dtype)
    z = _rand(be, (33, 17))
    z0 = z.copy()
    expected = portable.activation(be.xp, kind, z0, 0.1)
    out = kernels.activation(be, kind, z, 0.1, inplace=inplace)
    _close(be, out, expected, dtype)
    if inplace or kind == "identity":
        assert out.data.ptr == z.data.ptr
    else:
        assert out.data.ptr != z.data.ptr
        cupy.testing.assert_array_equal(z, z0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_bias_activation(dtype, kind, inplace):
    be = _be(dtype)
    z, b = _rand(be, (33, 17)), _rand(be, (17,), seed=1)
    z0 = z.copy()
    expected = portable.bias_activation(be.xp, kind, z0, b, 0.1)
    out = kernels.bias_activation(be, kind, z, b, 0.1, inplace=inplace)
    _close(be, out, expected, dtype)
    assert (out.data.ptr == z.data.ptr) == inplace
    if not inplace:
        cupy.testing.assert_array_equal(z, z0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_activation_grad(dtype, kind, inplace):
    be = _be(dtype)
    a = portable.activation(be.xp, kind, _rand(be, (33, 17)), 0.1)
    g = _rand(be, (33, 17), seed=2, scale=1.0)
    g0 = g.copy()
    expected = portable.activation_grad(be.xp, kind, a, g0, 0.1)
    out = kernels.activation_grad(be, kind, a, g, 0.1, inplace=inplace)
    _close(be, out, expected, dtype)
    if kind != "identity":
        assert (out.data.ptr == g.data.ptr) == inplace
        if not inplace:
            cupy.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_and_matmul(dtype):
    be = _be(dtype)
    x, w, b = _rand(be, (64, 40), 3, 1.0), _rand(be, (40, 24), 4, 0.2), _rand(be, (24,), 5)
    _close(be, kernels.linear(be, x, w, b), portable.linear(be.xp, x, w, b), dtype)
    _close(be, kernels.matmul(be, x.T, x), portable.matmul(be.xp, x.T, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_grad(dtype):
    be = _be(dtype)
    delta = _rand(be, (64, 24), 14, 1.0)
    delta0 = delta.copy()
    g = kernels.bias_grad(be, delta)
    assert g.shape == (24,)
    _close(be, g, portable.bias_grad(be.xp, delta), dtype)
    cupy.testing.assert_array_equal(delta, delta0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_in_place(dtype):
    be = _be(dtype)
    w, g = _rand(be, (40, 24), 6, 1.0), _rand(be, (40, 24), 7, 1.0)
    expected = portable.sgd_update(be.xp, w, g, 0.05)
    ptr = w.data.ptr
    out = kernels.sgd_update(be, w, g, 0.05)
    assert out.data.ptr == ptr
    _close(be, out, expected, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adam_update_in_place(dtype):
    be = _be(dtype)
    w, g, m = (_rand(be, (40, 24), s, 1.0) for s in (8, 9, 10))
    v = be.xp.abs(_rand(be, (40, 24), 11, 1.0))
    hyper = (1e-3, 0.9, 0.999, 1e-8, 1 - 0.9**5, 1 - 0.999**5)
    expected = portable.adam_update(be.xp, w, g, m, v, *hyper)
    ptrs = [a.data.ptr for a in (w, m, v)]
    out = kernels.adam_update(be, w, g, m, v, *hyper)
    assert [a.data.ptr for a in out] == ptrs
    for actual, exp in zip(out, expected, strict=True):
        _close(be, actual, exp, dtype)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_step_on_cupy_matches_numpy(dtype, optimizer):
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(64, 20)), rng.integers(0, 5, size=64)
    losses = {}
    models = {}
    for name in ("numpy", "cupy"):
        model = ap.mlp([20, 32, 16, 5], seed=3, backend=name, dtype=dtype)
        if optimizer == "sgd":
            opt = ap.SGD(model.parameters(), lr=0.1)
        else:
            opt = ap.Adam(model.parameters(), lr=0.01)
        be = model.backend
        xb, yb = be.asarray(x), be.asarray(y)
        loss = ap.SoftmaxCrossEntropy()
        losses[name] = [
            float(be.to_host(ap.train_step(model, loss, opt, xb, yb))) for _ in range(5)
        ]
        models[name] = model
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(losses["cupy"], losses["numpy"], rtol=tol)
    for p, q in zip(models["cupy"].parameters(), models["numpy"].parameters(), strict=True):
        np.testing.assert_allclose(_be(dtype).to_host(p.data), q.data, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- CUDA graphs


def _gemm():
    with cupy.cuda.Device():
        return CublasGemm(cupy.cuda.get_current_stream())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["cc", "cf", "fc", "ff", "strided"])
def test_capture_gemm_matches_cupy_matmul(dtype, layout):
    be = _be(dtype)
    a = _rand(be, (37, 29), 13, 0.5)
    b = _rand(be, (29, 23), 14, 0.5)
    if layout[0] == "f":
        a = cupy.asfortranarray(a)
    if layout[1:] == "f":
        b = cupy.asfortranarray(b)
    if layout == "strided":
        a = _rand(be, (37, 58), 13, 0.5)[:, ::2]
    expected = cupy.matmul(a, b)
    _close(be, _gemm()(a, b), expected, dtype)


def _graph_data(n=200, features=30, classes=4):
    rng = np.random.default_rng(15)
    return rng.normal(size=(n, features)), rng.integers(0, classes, size=n)


def _graph_run(step_fn, be, x, y, batch, epochs):
    xs, ys = be.asarray(x), be.asarray(y)
    out = []
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            out.append(float(be.to_host(step_fn(xs[i : i + batch], ys[i : i + batch]))))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_graph_steps_match_eager_steps(dtype):
    x, y = _graph_data()
    batch = 64  # 200 = 3 x 64 + a partial batch of 8
    ref = ap.mlp([30, 48, 4], seed=4, backend="cupy", dtype=dtype)
    ref_opt, loss = ap.SGD(ref.parameters(), lr=0.1), ap.SoftmaxCrossEntropy()
    be = ref.backend
    expected = _graph_run(lambda a, b: ap.train_step(ref, loss, ref_opt, a, b), be, x, y, batch, 4)
    model = ap.mlp([30, 48, 4], seed=4, backend="cupy", dtype=dtype)
    opt = ap.SGD(model.parameters(), lr=0.1)
    step = CudaGraphStep(model, loss, opt, (batch, 30), (batch,), strict=True)
    losses = _graph_run(step, be, x, y, batch, 4)
    assert step.captured and step.reason is None, step.reason
    assert step.graph_steps == 4 * 3 - 2 and step.eager_steps == 2 + 4
    tol = 1e-9 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(losses, expected, rtol=tol)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(be.to_host(p.data), be.to_host(q.data), rtol=tol, atol=tol)


def test_graph_step_with_momentum_falls_back_to_eager():
    x, y = _graph_data()
    model = ap.mlp([30, 48, 4], seed=4, backend="cupy", dtype="float64")
    opt = ap.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = CudaGraphStep(model, ap.SoftmaxCrossEntropy(), opt, (64, 30), (64,))
    ref = ap.mlp([30, 48, 4], seed=4, backend="cupy", dtype="float64")
    ref_opt = ap.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    be = model.backend
    losses = _graph_run(step, be, x, y, 64, 2)
    expected = _graph_run(
        lambda a, b: ap.train_step(ref, ap.SoftmaxCrossEntropy(), ref_opt, a, b), be, x, y, 64, 2
    )
    assert not step.captured and "in place" in step.reason
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def test_graph_step_trains_mse_regression():
    rng = np.random.default_rng(16)
    x, t = rng.normal(size=(128, 16)), rng.normal(size=(128, 4))
    model = ap.mlp([16, 32, 4], seed=5, backend="cupy", dtype="float32")
    opt = ap.SGD(model.parameters(), lr=0.05)
    step = CudaGraphStep(model, ap.MSE(), opt, (32, 16), (32, 4), strict=True)
    losses = _graph_run(step, model.backend, x, t, 32, 20)
    assert step.captured
    assert losses[-1] < 0.9 * losses[0]


# --------------------------------------------------------------------------- precision


def test_tf32_changes_float32_gemms():
    be = _be("float32")
    a, b = _rand(be, (512, 512), 17, 1.0), _rand(be, (512, 512), 18, 1.0)
    exact = be.to_host(a).astype(np.float64) @ be.to_host(b).astype(np.float64)

    def rel_err():
        c = be.to_host(cupy.matmul(a, b)).astype(np.float64)
        return np.linalg.norm(c - exact) / np.linalg.norm(exact)

    with tf32("cupy", False):
        assert rel_err() < 1e-5
    with tf32("cupy", True):
        assert rel_err() > 5e-5  # inputs rounded to a 10-bit mantissa


def test_mixed_precision_float16_on_cupy_converges_and_skips_overflow():
    rng = np.random.default_rng(19)
    y = rng.integers(0, 3, size=256)
    x = rng.normal(scale=2.0, size=(3, 8))[y] + rng.normal(size=(256, 8))
    loss = ap.SoftmaxCrossEntropy()
    model = ap.mlp([8, 32, 3], seed=6, backend="cupy", dtype="float32")
    ref = ap.mlp([8, 32, 3], seed=6, backend="cupy", dtype="float32")
    ref_opt = ap.SGD(ref.parameters(), lr=0.5)
    mp = MixedPrecision(model, loss, ap.SGD(model.parameters(), lr=0.5), "float16")
    be = model.backend
    xb, yb = be.asarray(x), be.asarray(y)
    for _ in range(50):
        ap.train_step(ref, loss, ref_opt, xb, yb)
        mp.step(xb, yb)
    final_ref = float(be.to_host(loss(ref.forward(xb), yb)))
    final_mp = float(be.to_host(loss(model.forward(xb), yb)))
    assert final_mp == pytest.approx(final_ref, rel=0.05, abs=0.01)
    weights = [be.to_host(p.data) for p in model.parameters()]
    mp.scale = be.scalar(2.0**40)
    mp.step(xb, yb)
    assert not bool(be.to_host(mp.finite))
    assert float(be.to_host(mp.scale)) == 2.0**39
    for p, w in zip(model.parameters(), weights, strict=True):
        np.testing.assert_array_equal(be.to_host(p.data), w)
