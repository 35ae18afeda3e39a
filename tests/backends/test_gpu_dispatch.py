"""Kernel dispatch for the CuPy backend, checked without a GPU.

- A backend whose adapter is CuPy's dispatches to its fast module
  (:mod:`arrayprop.backends.cupy.kernels`) when it imports, and to the portable kernels when CuPy
  is absent or ``ARRAYPROP_KERNELS=portable``.
- The CuPy kernels themselves run here on a stand-in ``cupy`` module (tests/cupy_standin.py)
  whose ``ElementwiseKernel`` *interprets* the kernel's C source on NumPy arrays. That checks
  each kernel's formula, its argument order and which buffer it overwrites against the portable
  reference; compiling the C for real is scripts/cupy_compile_check.py's job, running it on a
  device tests/backends/test_cupy.py's.
- The NumPy fast paths (matmul, bias_activation, adam_update) against the portable ones, and
  the portable Adam against the textbook algorithm.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import array_api_compat.numpy as npx
import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.backends.cupy import CupyBackend
from arrayprop.backends.numpy import kernels as numpy_fast
from arrayprop.kernels import portable
from cupy_standin import (
    FakeElementwiseKernel,
    forget_cupy_fast,
    import_cupy_fast,
    restoring_cupy_fast,
)

KINDS = portable.ACTIVATIONS


@pytest.fixture
def fast(monkeypatch):
    """Fast paths on, even when the suite runs with ARRAYPROP_KERNELS=portable."""
    monkeypatch.setitem(kernels._state, "portable", False)


@pytest.fixture
def fresh_dispatch(fast):
    """Let a test decide what ``import cupy`` gives; restore the real state afterwards."""
    with restoring_cupy_fast():
        forget_cupy_fast()
        yield


@pytest.fixture
def fake_cupy(monkeypatch, fresh_dispatch):
    """``import cupy`` gives the NumPy stand-in; returns cupy_fast built on it."""
    return import_cupy_fast(monkeypatch)


def _cupy_backend() -> CupyBackend:
    """CuPy's adapter on host arrays: no device, and its fast module not yet looked up."""
    return CupyBackend(xp=npx, device=None, dtype=npx.float64, array_type=np.ndarray)


@pytest.fixture
def cupy_backend() -> CupyBackend:
    return _cupy_backend()


def _data(rng, dtype, shape=(6, 5)):
    z = rng.normal(size=shape) * 3
    z[0, :3] = [0.0, -40.0, 40.0]  # zero and saturating sigmoid / tanh inputs
    return z.astype(dtype)


TOL = {np.float64: 1e-12, np.float32: 1e-5, np.float16: 2e-3}


def _close(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(
        actual.astype(np.float64), expected.astype(np.float64), rtol=TOL[dtype], atol=TOL[dtype]
    )


# --------------------------------------------------------------------------- dispatch


def test_cupy_backend_dispatches_to_cupy_fast_when_it_imports(fake_cupy, cupy_backend):
    assert cupy_backend.fast is fake_cupy
    assert kernels._fast(cupy_backend) is fake_cupy
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    z = kernels.linear(cupy_backend, x, w, b)
    np.testing.assert_allclose(z, x @ w + b, rtol=1e-12)
    assert FakeElementwiseKernel.calls == ["arrayprop_bias_act_identity_inplace"]


def test_cupy_backend_falls_back_to_portable_without_cupy(
    monkeypatch, fresh_dispatch, cupy_backend
):
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    assert cupy_backend.fast is None
    assert kernels._fast(cupy_backend) is None
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 3))
    a = kernels.activation(cupy_backend, "relu", z, inplace=True)
    np.testing.assert_array_equal(a, np.where(z > 0, z, 0.0))
    assert not np.shares_memory(a, z)  # the portable path never writes into its argument


def test_use_portable_turns_the_cupy_fast_path_off(fake_cupy, cupy_backend):
    with kernels.use_portable():
        assert kernels._fast(cupy_backend) is None
    assert kernels._fast(cupy_backend) is fake_cupy


def test_environment_variable_selects_portable_kernels(tmp_path):
    # The variable is read when arrayprop is imported, so this needs a fresh interpreter.
    code = (
        "import sys, types\n"
        "sys.modules['cupy'] = types.ModuleType('cupy')\n"  # would import if dispatched to
        "import numpy as np\n"
        "import arrayprop as ap, arrayprop.kernels as k\n"
        "from arrayprop.backends.cupy import CupyBackend\n"
        "be = CupyBackend(xp=None, device=None, dtype=None, array_type=np.ndarray)\n"
        "print(k._fast(be), k._fast(ap.get_backend('numpy')))\n"
        "print(k.fused_sgd_status())\n"
    )
    src = str(Path(ap.__file__).parents[1])
    env = {**os.environ, "ARRAYPROP_KERNELS": "portable", "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines() == ["None None", "off (portable kernels)"]


def test_numpy_backend_still_dispatches_to_numpy_fast(fast):
    assert kernels._fast(ap.get_backend("numpy")) is numpy_fast


def test_other_backends_have_no_fast_path(fast):
    assert ap.get_backend("array_api_strict").fast is None
    assert kernels._fast(ap.get_backend("array_api_strict")) is None


def test_dense_backward_goes_through_the_matmul_dispatcher(monkeypatch):
    # CUDA-graph capture swaps the GEMM behind kernels.matmul, so Dense must not call `@`.
    calls = []
    real = kernels.matmul

    def counting(backend, a, b):
        calls.append((a.shape, b.shape))
        return real(backend, a, b)

    monkeypatch.setattr(kernels, "matmul", counting)
    layer = ap.Dense(3, 2, seed=0, backend="numpy", dtype="float64")
    x = np.arange(12.0).reshape(4, 3)
    layer.forward(x)
    g = np.ones((4, 2))
    dx = layer.backward(g)
    assert calls == [((4, 2), (2, 3))]  # δ Wᵀ now; ∂C/∂W = Xᵀδ when first read
    np.testing.assert_allclose(layer.weight.grad, x.T @ g)
    assert calls == [((4, 2), (2, 3)), ((3, 4), (4, 2))]
    np.testing.assert_allclose(dx, g @ layer.weight.data.T)
    layer.forward(x)
    assert layer.backward(g, input_grad=False) is None
    assert len(calls) == 2
    np.testing.assert_allclose(layer.weight.grad, x.T @ g)
    assert len(calls) == 3


# --------------------------------------------------------------------------- cupy_fast semantics


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_cupy_fast_activation_matches_portable(fake_cupy, dtype, kind, inplace):
    z = _data(np.random.default_rng(2), dtype)
    z0 = z.copy()
    expected = portable.activation(np, kind, z0.astype(np.float64), 0.1)
    a = fake_cupy.activation(kind, z, 0.1, inplace)
    _close(a, expected, dtype)
    if kind == "identity":
        assert a is z
    elif inplace:
        assert a is z
    else:
        np.testing.assert_array_equal(z, z0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_cupy_fast_bias_activation_matches_portable(fake_cupy, dtype, kind, inplace):
    rng = np.random.default_rng(3)
    z, b = _data(rng, dtype), rng.normal(size=5).astype(dtype)
    z0 = z.copy()
    expected = portable.bias_activation(np, kind, z0.astype(np.float64), b.astype(np.float64), 0.1)
    a = fake_cupy.bias_activation(kind, z, b, 0.1, inplace)
    _close(a, expected, dtype)
    assert (a is z) == inplace
    if not inplace:
        np.testing.assert_array_equal(z, z0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_cupy_fast_activation_grad_matches_portable(fake_cupy, dtype, kind, inplace):
    rng = np.random.default_rng(4)
    a = portable.activation(np, kind, _data(rng, np.float64), 0.1).astype(dtype)
    g = rng.normal(size=a.shape).astype(dtype)
    g0 = g.copy()
    expected = portable.activation_grad(np, kind, a.astype(np.float64), g0.astype(np.float64), 0.1)
    d = fake_cupy.activation_grad(kind, a, g, 0.1, inplace)
    _close(d, expected, dtype)
    if kind != "identity":
        assert (d is g) == inplace
        if not inplace:
            np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_fast_linear_and_matmul(fake_cupy, dtype):
    rng = np.random.default_rng(5)
    x, w, b = (rng.normal(size=s).astype(dtype) for s in ((7, 4), (4, 3), (3,)))
    _close(fake_cupy.linear(x, w, b), x.astype(np.float64) @ w + b, dtype)
    _close(fake_cupy.matmul(x.T, x), x.T.astype(np.float64) @ x, dtype)


def test_cupy_fast_matmul_uses_the_capturable_gemm_inside_the_block(fake_cupy):
    used = []

    def gemm(a, b):
        used.append(1)
        return np.matmul(a, b)

    a = np.eye(2)
    with fake_cupy.capturable_gemm(gemm):
        fake_cupy.matmul(a, a)
        fake_cupy.linear(a, a, np.zeros(2))
    fake_cupy.matmul(a, a)
    assert len(used) == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_cupy_fast_bias_grad_matches_portable(fake_cupy, dtype):
    rng = np.random.default_rng(12)
    delta = rng.normal(size=(9, 4)).astype(dtype)
    delta0 = delta.copy()
    g = fake_cupy.bias_grad(delta)
    assert g.shape == (4,)
    _close(g, portable.bias_grad(np, delta0.astype(np.float64)), dtype)
    np.testing.assert_array_equal(delta, delta0)  # a new array; delta is only read


def test_bias_grad_dispatches_to_cupy_fast(fake_cupy, cupy_backend):
    delta = np.arange(12.0).reshape(4, 3)
    calls = []
    real = fake_cupy.bias_grad

    def counting(d):
        calls.append(d.shape)
        return real(d)

    fake_cupy.bias_grad = counting
    np.testing.assert_allclose(kernels.bias_grad(cupy_backend, delta), delta.sum(axis=0))
    assert calls == [(4, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_cupy_fast_sgd_update_in_place(fake_cupy, dtype):
    rng = np.random.default_rng(6)
    w, g = (rng.normal(size=(4, 3)).astype(dtype) for _ in range(2))
    expected = w.astype(np.float64) - 0.05 * g.astype(np.float64)
    out = fake_cupy.sgd_update(w, g, 0.05)
    assert out is w
    _close(w, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_fast_adam_update_in_place(fake_cupy, dtype):
    rng = np.random.default_rng(7)
    w, g = (rng.normal(size=(4, 3)).astype(dtype) for _ in range(2))
    m, v = rng.normal(size=(4, 3)).astype(dtype), rng.random(size=(4, 3)).astype(dtype)
    hyper = (1e-2, 0.9, 0.999, 1e-8, 1 - 0.9**3, 1 - 0.999**3)
    ew, em, ev = portable.adam_update(np, *(t.astype(np.float64) for t in (w, g, m, v)), *hyper)
    out = fake_cupy.adam_update(w, g, m, v, *hyper)
    assert out[0] is w and out[1] is m and out[2] is v
    for actual, expected in zip(out, (ew, em, ev), strict=True):
        _close(actual, expected, dtype)


def test_cupy_fast_rejects_an_unknown_activation(fake_cupy):
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        fake_cupy.activation("gelu", np.zeros((2, 2)), 0.0, False)


def test_cupy_fast_builds_each_kernel_once(fake_cupy):
    k1 = fake_cupy._elementwise("act", "relu", True)
    assert fake_cupy._elementwise("act", "relu", True) is k1
    assert fake_cupy._elementwise("act", "relu", False) is not k1


# --------------------------------------------------------------------------- numpy_fast additions


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_numpy_bias_activation_matches_portable(fast, dtype, kind, inplace):
    rng = np.random.default_rng(8)
    z, b = _data(rng, dtype), rng.normal(size=5).astype(dtype)
    z0 = z.copy()
    be = ap.get_backend("numpy")
    expected = portable.bias_activation(np, kind, z0, b, 0.1)
    a = kernels.bias_activation(be, kind, z, b, 0.1, inplace=inplace)
    _close(a, expected, dtype)
    if not inplace:
        np.testing.assert_array_equal(z, z0)


def test_numpy_matmul_matches_portable(fast):
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(
        kernels.matmul(ap.get_backend("numpy"), a.T.T, b), portable.matmul(np, a, b), rtol=1e-14
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_adam_update_matches_portable_in_place(fast, dtype):
    rng = np.random.default_rng(10)
    w, g, m = (rng.normal(size=(4, 3)).astype(dtype) for _ in range(3))
    v = rng.random(size=(4, 3)).astype(dtype)
    hyper = (1e-3, 0.8, 0.99, 1e-7, 1 - 0.8**2, 1 - 0.99**2)
    expected = portable.adam_update(np, w.copy(), g, m.copy(), v.copy(), *hyper)
    out = kernels.adam_update(ap.get_backend("numpy"), w, g, m, v, *hyper)
    assert out[0] is w and out[1] is m and out[2] is v
    for actual, exp in zip(out, expected, strict=True):
        _close(actual, exp, dtype)


def test_portable_adam_matches_the_textbook_algorithm():
    # Kingma & Ba, Algorithm 1, with bias-corrected moments m̂, v̂ and ε outside the root (the
    # torch.optim.Adam convention), written out independently of portable.adam_update.
    rng = np.random.default_rng(11)
    w0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(4)]
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-6
    ref, m1, m2 = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    w, m, v = w0, np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g**2
        m_hat, v_hat = m1 / (1 - b1**t), m2 / (1 - b2**t)
        ref = ref - lr * m_hat / (np.sqrt(v_hat) + eps)
        w, m, v = portable.adam_update(np, w, g, m, v, lr, b1, b2, eps, 1 - b1**t, 1 - b2**t)
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, m1, rtol=1e-14)
    np.testing.assert_allclose(v, m2, rtol=1e-14)
