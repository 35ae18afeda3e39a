"""Kernel dispatch for the CuPy backend, checked without a GPU.

- A backend whose adapter is CuPy's dispatches to its fast module
  (:mod:`arrayprop.backends.cupy.kernels`) when it imports, and to the portable kernels when CuPy
  is absent or ``ARRAYPROP_KERNELS=portable``.
- The CuPy kernels themselves run here on a stand-in ``cupy`` module whose ``ElementwiseKernel``
  *interprets* the kernel's C source on NumPy arrays. That checks each kernel's formula, its
  argument order and which buffer it overwrites against the portable reference; compiling the C
  for real and running it on a device is tests/backends/test_cupy.py's job.
- The NumPy fast paths (matmul, bias_activation, adam_update) against the portable ones, and
  the portable Adam against the textbook algorithm.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import array_api_compat.numpy as npx
import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.backends.cupy import CupyBackend
from arrayprop.backends.numpy import kernels as numpy_fast
from arrayprop.kernels import portable

CUPY_FAST = "arrayprop.backends.cupy.kernels"
KINDS = portable.ACTIVATIONS


# --------------------------------------------------------------------------- a stand-in for cupy


def _params(text: str) -> list[tuple[str, str]]:
    return [tuple(p.split()) for p in text.split(",") if p.strip()]


def _python(expr: str) -> str:
    """Rewrite one C expression of a kernel (casts already removed) as Python."""
    expr = expr.strip()
    depth, q, c = 0, None, None
    for i, ch in enumerate(expr):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch == "?" and q is None:
            q = i
        elif depth == 0 and ch == ":" and q is not None and c is None:
            c = i
    if q is not None:
        cond, then, other = expr[:q], expr[q + 1 : c], expr[c + 1 :]
        return f"_where({_python(cond)}, {_python(then)}, {_python(other)})"
    out, i = [], 0
    while i < len(expr):
        if expr[i] != "(":
            out.append(expr[i])
            i += 1
            continue
        depth, j = 1, i + 1
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            j += 1
        out.append("(" + _python(expr[i + 1 : j - 1]) + ")")
        i = j
    return "".join(out)


def _unary(np_f, math_f):
    return lambda v: np_f(v) if isinstance(v, np.ndarray) else math_f(v)


class FakeElementwiseKernel:
    """Runs an ``ElementwiseKernel``'s operation on NumPy arrays, as the GPU would per element.

    Array parameters of type ``T`` are broadcast, widened to the accumulation type (float32 for
    float16, as ``acc_t``), output parameters start from the given buffers (so in-place kernels
    read them) and are written back into them.
    """

    calls: ClassVar[list[str]] = []

    def __init__(self, in_params, out_params, operation, name, preamble=""):
        assert re.fullmatch(r"[A-Za-z_]\w*", name), name
        assert "ap_acc" not in operation or "struct ap_acc" in preamble
        self.ins, self.outs, self.name = _params(in_params), _params(out_params), name
        self.statements = []
        for stmt in re.sub(r"\((acc_t|T)\)", "", operation).split(";"):
            stmt = " ".join(stmt.split())
            if not stmt or stmt.startswith("typedef"):
                continue
            target, expr = re.fullmatch(r"(?:acc_t )?(\w+) = (.*)", stmt).groups()
            self.statements.append((target, compile(_python(expr), name, "eval")))

    def __call__(self, *args):
        FakeElementwiseKernel.calls.append(self.name)
        ins, outs = args[: len(self.ins)], list(args[len(self.ins) :])
        assert len(outs) in (0, len(self.outs)), f"{self.name}: bad argument count"
        typed = [
            a
            for (t, _), a in zip(self.ins + self.outs, list(ins) + outs, strict=False)
            if t == "T" and isinstance(a, np.ndarray)
        ]
        dtype = typed[0].dtype
        assert all(a.dtype == dtype for a in typed), f"{self.name}: mixed dtypes"
        acc = np.float32 if dtype == np.float16 else dtype
        shape = np.broadcast_shapes(*(a.shape for a in typed))
        if not outs:
            outs = [np.empty(shape, dtype) for _ in self.outs]
        env = {
            "_where": np.where,
            "exp": _unary(np.exp, math.exp),
            "tanh": _unary(np.tanh, math.tanh),
            "sqrt": _unary(np.sqrt, math.sqrt),
        }
        for (t, n), a in zip(self.ins, ins, strict=True):
            env[n] = a.astype(acc) if t == "T" else float(a)
        for (_, n), a in zip(self.outs, outs, strict=True):
            assert a.shape == shape, f"{self.name}: output {n} of shape {a.shape}, need {shape}"
            env[n] = a.astype(acc)
        for target, code in self.statements:
            env[target] = eval(code, env)  # the kernel's own statements, translated above
        for (_, n), a in zip(self.outs, outs, strict=True):
            a[...] = np.broadcast_to(env[n], shape)
        return outs[0] if len(outs) == 1 else tuple(outs)


def _fake_cupy() -> types.ModuleType:
    mod = types.ModuleType("cupy")
    mod.ElementwiseKernel = FakeElementwiseKernel
    mod.matmul = np.matmul
    return mod


def _forget_cupy_fast() -> None:
    sys.modules.pop(CUPY_FAST, None)
    import arrayprop.backends.cupy as cupy_package

    if hasattr(cupy_package, "kernels"):
        delattr(cupy_package, "kernels")


@pytest.fixture
def fast(monkeypatch):
    """Fast paths on, even when the suite runs with ARRAYPROP_KERNELS=portable."""
    monkeypatch.setitem(kernels._state, "portable", False)


@pytest.fixture
def fresh_dispatch(fast):
    """Let a test decide what ``import cupy`` gives; restore the real state afterwards."""
    saved = sys.modules.get(CUPY_FAST)
    _forget_cupy_fast()
    yield
    _forget_cupy_fast()
    if saved is not None:
        sys.modules[CUPY_FAST] = saved


@pytest.fixture
def fake_cupy(monkeypatch, fresh_dispatch):
    """``import cupy`` gives the NumPy stand-in; returns cupy_fast built on it."""
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    FakeElementwiseKernel.calls = []
    return importlib.import_module(CUPY_FAST)


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
