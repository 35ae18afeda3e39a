"""Mixed precision and TF32 switches, on the CPU: PyTorch has bfloat16 and float16 there, NumPy
has float16. Gradients are checked against float64 PyTorch autograd with tolerances fit for the
compute dtype; training against float32 training; loss scaling by forcing an overflow.
"""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendUnavailableError, DTypeError
from arrayprop.training.precision import MixedPrecision, enable_tf32, tf32

SIZES = (8, 16, 3)


def _problem(n=96, seed=0):
    """Three Gaussian blobs in 8-D: learnable in a few dozen full-batch steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = rng.normal(scale=2.0, size=(3, SIZES[0]))
    return (centers[y] + rng.normal(size=(n, SIZES[0]))).astype(np.float32), y


def _model(backend, seed=0):
    return ap.mlp(SIZES, activation="tanh", seed=seed, backend=backend, dtype="float32")


def _torch_reference_grads(model, x, y):
    """∂C/∂W, ∂C/∂b of the same network in float64 by PyTorch autograd."""
    torch = pytest.importorskip("torch")
    be = model.backend
    params = [torch.tensor(be.to_host(p.data), dtype=torch.float64, requires_grad=True)
              for p in model.parameters()]  # fmt: skip
    w1, b1, w2, b2 = params
    logits = torch.tanh(torch.tensor(x, dtype=torch.float64) @ w1 + b1) @ w2 + b2
    torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
    return [p.grad.numpy() for p in params]


def _rel_err(actual, expected):
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


@pytest.mark.parametrize(
    ("backend", "dtype", "tol"),
    [("torch", "bfloat16", 5e-2), ("torch", "float16", 5e-3), ("numpy", "float16", 5e-3)],
)
def test_gradients_agree_with_float64_to_the_compute_precision(backend, dtype, tol):
    if backend == "torch":
        pytest.importorskip("torch")
    x, y = _problem()
    model = _model(backend)
    mp = MixedPrecision(model, ap.SoftmaxCrossEntropy(), ap.SGD(model.parameters()), dtype)
    value, grads = mp.value_and_grads(x, y)
    expected = _torch_reference_grads(model, x, y)
    be = model.backend
    for g, e, p in zip(grads, expected, model.parameters(), strict=True):
        g = be.to_host(g)
        assert g.dtype == np.float32 and g.shape == p.shape
        err = _rel_err(g.astype(np.float64), e)
        assert err < tol, (p.name, err)
    # The passes really ran in low precision: float32 would agree to ~1e-6.
    assert max(_rel_err(be.to_host(g), e) for g, e in zip(grads, expected, strict=True)) > 1e-5
    assert be.to_host(value).dtype == np.float32


@pytest.mark.parametrize(("backend", "dtype"), [("torch", "bfloat16"), ("numpy", "float16")])
def test_mixed_precision_training_converges_like_float32(backend, dtype):
    if backend == "torch":
        pytest.importorskip("torch")
    x, y = _problem()
    loss = ap.SoftmaxCrossEntropy()
    ref = _model(backend)
    ref_opt = ap.SGD(ref.parameters(), lr=0.5)
    model = _model(backend)
    mp = MixedPrecision(model, loss, ap.SGD(model.parameters(), lr=0.5), dtype)
    xb = model.backend.asarray(x)
    for _ in range(40):
        ap.train_step(ref, loss, ref_opt, xb, y)
        mp.step(xb, y)
    start = float(model.backend.to_host(loss(_model(backend).forward(xb), y)))
    final_ref = float(ref.backend.to_host(loss(ref.forward(xb), y)))
    final_mp = float(model.backend.to_host(loss(model.forward(xb), y)))
    assert final_ref < 0.5 * start  # the problem was learnt ...
    assert final_mp == pytest.approx(final_ref, rel=0.05, abs=0.01)  # ... as well in low precision
    for p in model.parameters():  # the masters stay float32
        assert model.backend.to_host(p.data).dtype == np.float32


def test_an_overflowing_step_is_skipped_and_the_scale_halved():
    x, y = _problem()
    model = _model("numpy")
    opt = ap.SGD(model.parameters(), lr=0.5, momentum=0.9)
    mp = MixedPrecision(model, ap.SoftmaxCrossEntropy(), opt, "float16", init_scale=8.0)
    assert mp.dynamic
    mp.step(x, y)  # a good step: creates the momentum buffers
    assert bool(mp.finite)
    weights = [p.data.copy() for p in model.parameters()]
    velocity = [s["velocity"].copy() for s in opt.state]
    mp.scale = model.backend.scalar(2.0**40)  # C·S overflows float16 (max 65504)
    value = mp.step(x, y)
    assert np.isfinite(value)  # the loss itself is computed in float32
    assert not bool(mp.finite)
    for p, w in zip(model.parameters(), weights, strict=True):
        np.testing.assert_array_equal(p.data, w)
    for s, v in zip(opt.state, velocity, strict=True):
        np.testing.assert_array_equal(s["velocity"], v)
    assert float(mp.scale) == 2.0**39
    mp.step(x, y)  # still overflowing: skipped again, halved again
    assert float(mp.scale) == 2.0**38
    for p, w in zip(model.parameters(), weights, strict=True):
        np.testing.assert_array_equal(p.data, w)


def test_the_scale_grows_after_growth_interval_good_steps():
    x, y = _problem()
    model = _model("numpy")
    before = [p.data.copy() for p in model.parameters()]
    mp = MixedPrecision(
        model, ap.SoftmaxCrossEntropy(), ap.SGD(model.parameters(), lr=0.1), "float16",
        init_scale=4.0, growth_interval=3,
    )  # fmt: skip
    scales = []
    for _ in range(7):
        mp.step(x, y)
        scales.append(float(mp.scale))
    assert scales == [4.0, 4.0, 8.0, 8.0, 8.0, 16.0, 16.0]
    assert all(
        not np.array_equal(p.data, b) for p, b in zip(model.parameters(), before, strict=True)
    )


def test_loss_scaling_defaults_and_static_scale():
    model = _model("numpy")
    opt = ap.SGD(model.parameters())
    assert MixedPrecision(model, ap.MSE(), opt, "float16").dynamic
    static = MixedPrecision(model, ap.SoftmaxCrossEntropy(), opt, "float16", loss_scale=128.0)
    assert not static.dynamic and float(static.scale) == 128.0
    x, y = _problem()
    _, grads = static.value_and_grads(x, y)
    _, unscaled = MixedPrecision(
        model, ap.SoftmaxCrossEntropy(), opt, "float16", loss_scale=None
    ).value_and_grads(x, y)
    for g, u in zip(grads, unscaled, strict=True):  # the scale is divided out again
        np.testing.assert_allclose(g, u, rtol=2e-2, atol=1e-4)


def test_bfloat16_needs_no_loss_scaling():
    pytest.importorskip("torch")
    model = _model("torch")
    bf = MixedPrecision(model, ap.MSE(), ap.SGD(model.parameters()), "bfloat16")
    assert not bf.dynamic and not bf.scaled
    assert repr(bf) == "MixedPrecision(bfloat16, loss scaling none)"


def test_bad_configurations_are_rejected():
    model = _model("numpy")
    opt = ap.SGD(model.parameters())
    loss = ap.SoftmaxCrossEntropy()
    with pytest.raises(DTypeError, match="backend 'numpy' has no dtype 'bfloat16'"):
        MixedPrecision(model, loss, opt, "bfloat16")
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        MixedPrecision(model, loss, opt, "int8")
    with pytest.raises(ValueError, match="loss_scale must be"):
        MixedPrecision(model, loss, opt, "float16", loss_scale=-1.0)
    half = ap.mlp(SIZES, backend="numpy", dtype="float16")
    with pytest.raises(DTypeError, match="master weights must be float32 or float64, got float16"):
        MixedPrecision(half, loss, ap.SGD(half.parameters()), "float16")


def test_tf32_switch_for_torch_restores_the_previous_setting():
    torch = pytest.importorskip("torch")
    matmul = torch.backends.cuda.matmul
    attr = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, attr)
    with tf32("torch"):
        assert getattr(matmul, attr) in ("tf32", True)
        assert enable_tf32("torch", False) is True
        assert getattr(matmul, attr) in ("ieee", False)
        assert enable_tf32(ap.get_backend("torch"), True) is False
    assert getattr(matmul, attr) == before


def test_tf32_switch_for_cupy_sets_the_environment_variable(monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    with tf32("cupy"):
        assert os.environ["CUPY_TF32"] == "1"
        assert enable_tf32("cupy", False) is True
        assert os.environ["CUPY_TF32"] == "0"
    assert "CUPY_TF32" not in os.environ


class CUDARuntimeError(RuntimeError):
    """CuPy's error type (cupy_backends.cuda.api.runtime), as raised without a CUDA driver."""


def _cupy_without_driver(monkeypatch):
    """A stand-in cupy whose TF32 switch fails as CuPy 14 does where no driver is usable:
    set_compute_type asks the device for its compute capability."""
    calls = []

    def set_compute_type(dtype, mode):
        calls.append(mode)
        raise CUDARuntimeError(
            "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime "
            "version"
        )

    linalg = types.ModuleType("cupy._core._routines_linalg")
    linalg.COMPUTE_TYPE_DEFAULT, linalg.COMPUTE_TYPE_TF32 = 1, 4
    linalg.set_compute_type = set_compute_type
    core = types.ModuleType("cupy._core")
    core._routines_linalg = linalg
    cupy = types.ModuleType("cupy")
    cupy._core = core
    for name, mod in (("cupy", cupy), ("cupy._core", core), (linalg.__name__, linalg)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_tf32_for_cupy_without_a_driver_is_backend_unavailable(monkeypatch):
    calls = _cupy_without_driver(monkeypatch)
    monkeypatch.setenv("CUPY_TF32", "0")
    with pytest.raises(
        BackendUnavailableError, match=r"no CUDA device is usable.*InsufficientDriver"
    ):
        enable_tf32("cupy")
    assert calls == [4]
    assert os.environ["CUPY_TF32"] == "0"  # unchanged
    with pytest.raises(BackendUnavailableError), tf32("cupy"):
        pytest.fail("the block must not run")
    assert os.environ["CUPY_TF32"] == "0"


def test_tf32_is_refused_for_cpu_only_libraries():
    with pytest.raises(BackendUnavailableError, match="not of 'numpy'"):
        enable_tf32("numpy")
