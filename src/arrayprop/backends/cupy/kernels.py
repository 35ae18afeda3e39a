"""CuPy fast paths: fused elementwise kernels around cuBLAS GEMMs.

The functions match :mod:`arrayprop.backends.numpy.kernels` name for name and are checked against
:mod:`arrayprop.kernels.portable` on a GPU by tests/backends/test_cupy.py (and, without a GPU,
on a NumPy stand-in by tests/backends/test_gpu_dispatch.py). The CuPy backend names this module
as its ``fast`` module and only the dispatcher in :mod:`arrayprop.kernels` calls it; importing
this module imports CuPy, and the ImportError when CuPy is missing is what sends the dispatcher
to the portable versions.

What is fused (equation numbers from docs/math.md):

- ``bias_activation``: A = f(Z + b) in one pass over the GEMM output Z (eq. 1–2), b broadcast
  over the rows; ``linear`` is its identity case after ``cupy.matmul`` (cuBLAS).
- ``activation_grad``: δ = g ⊙ f'(Z) in one pass (eqs. 3–4), f' read off the output A (eq. 9).
- ``sgd_update`` / ``adam_update``: W ← W − η ∂W (eq. 7) and the Adam step (eq. 16), in place.

``bias_grad`` (Σ_rows δ, eq. 6) is CuPy's own reduction over the rows, not a kernel of ours.
Every name :mod:`arrayprop.kernels` calls on a fast module without a ``hasattr`` guard must be
defined here (tests/kernels/test_dispatch_table.py checks that).

Every kernel is a ``cupy.ElementwiseKernel`` built on first use and cached here; CuPy compiles
it once per dtype (``T`` = float16, float32 or float64) and device and keeps the binary in its
disk cache. float16 is computed in float32 registers (``acc_t``) and rounded once on store;
Python scalars (η, α, β, ε) arrive as float64 and are rounded to ``acc_t`` like NumPy rounds a
Python float against an array. A function with ``inplace=True`` writes its result over the
buffer the caller handed over (and returns it); ``sgd_update`` and ``adam_update`` always update
the optimizer-owned ``w``, ``m``, ``v`` in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cupy

from arrayprop.kernels.portable import ACTIVATIONS

#: The dtypes every kernel is written for (``T``); scripts/cupy_compile_check.py compiles each
#: kernel of :func:`all_kernels` for each of them with NVRTC.
DTYPES = ("float16", "float32", "float64")

# acc_t: the type the arithmetic runs in; float16 data is widened to float.
_PREAMBLE = r"""
template <typename U> struct ap_acc { typedef U type; };
template <> struct ap_acc<float16> { typedef float type; };
"""
_ACC = "typedef ap_acc<T>::type acc_t;\n"

# A = f(Z) from the pre-activation zv (eq. 2); the same expressions as portable.activation.
_FORWARD = {
    "identity": "acc_t yv = zv;",
    "relu": "acc_t yv = zv < (acc_t)0 ? (acc_t)0 : zv;",  # NaN passes through, as maximum
    "leaky_relu": "acc_t yv = zv > (acc_t)0 ? zv : (acc_t)alpha * zv;",
    # σ through e^{-|z|}: no exponential overflows (portable.sigmoid).
    "sigmoid": (
        "acc_t ev = exp(zv < (acc_t)0 ? zv : -zv);\n"
        "acc_t yv = zv < (acc_t)0 ? ev / ((acc_t)1 + ev) : (acc_t)1 / ((acc_t)1 + ev);"
    ),
    "tanh": "acc_t yv = tanh(zv);",
}

# δ = g ⊙ f'(Z) (eqs. 3–4) with f' written in the output av (eq. 9), as portable.activation_grad.
_BACKWARD = {
    "identity": "acc_t dv = gv;",
    "relu": "acc_t dv = av > (acc_t)0 ? gv : (acc_t)0;",
    "leaky_relu": "acc_t dv = av > (acc_t)0 ? gv : (acc_t)alpha * gv;",
    "sigmoid": "acc_t dv = gv * av * ((acc_t)1 - av);",
    "tanh": "acc_t dv = gv * ((acc_t)1 - av * av);",
}

# (op, inplace) -> (in_params, out_params, code before the kind's expression, store).
# In place, the buffer to overwrite is an output parameter that the code also reads.
_SIGNATURES = {
    ("act", False): ("T z, float64 alpha", "T y", "acc_t zv = (acc_t)z;", "y = (T)yv;"),
    ("act", True): ("float64 alpha", "T z", "acc_t zv = (acc_t)z;", "z = (T)yv;"),
    ("bias_act", False): (
        "T z, T b, float64 alpha",
        "T y",
        "acc_t zv = (acc_t)z + (acc_t)b;",
        "y = (T)yv;",
    ),
    ("bias_act", True): (
        "T b, float64 alpha",
        "T z",
        "acc_t zv = (acc_t)z + (acc_t)b;",
        "z = (T)yv;",
    ),
    ("grad", False): (
        "T a, T g, float64 alpha",
        "T d",
        "acc_t av = (acc_t)a; acc_t gv = (acc_t)g;",
        "d = (T)dv;",
    ),
    ("grad", True): (
        "T a, float64 alpha",
        "T g",
        "acc_t av = (acc_t)a; acc_t gv = (acc_t)g;",
        "g = (T)dv;",
    ),
}


@functools.cache
def _elementwise(op: str, kind: str, inplace: bool) -> cupy.ElementwiseKernel:
    """The kernel for ``op`` ("act", "bias_act" or "grad") of activation ``kind``."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")
    in_params, out_params, load, store = _SIGNATURES[op, inplace]
    body = (_BACKWARD if op == "grad" else _FORWARD)[kind]
    return cupy.ElementwiseKernel(
        in_params,
        out_params,
        f"{_ACC}{load}\n{body}\n{store}",
        f"arrayprop_{op}_{kind}{'_inplace' if inplace else ''}",
        preamble=_PREAMBLE,
    )


@functools.cache
def _sgd_kernel() -> cupy.ElementwiseKernel:
    # W ← W − η G (eq. 7), W overwritten.
    return cupy.ElementwiseKernel(
        "T g, float64 lr",
        "T w",
        f"{_ACC}w = (T)((acc_t)w - (acc_t)lr * (acc_t)g);",
        "arrayprop_sgd_update",
        preamble=_PREAMBLE,
    )


@functools.cache
def _adam_kernel() -> cupy.ElementwiseKernel:
    # m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;  W ← W − η/c₁ · m / (√v / √c₂ + ε).
    return cupy.ElementwiseKernel(
        "T g, float64 lr, float64 beta1, float64 beta2, float64 eps, float64 bias_c1, "
        "float64 bias_c2",
        "T w, T m, T v",
        _ACC
        + """
        acc_t gv = (acc_t)g;
        acc_t mv = (acc_t)beta1 * (acc_t)m + (acc_t)(1.0 - beta1) * gv;
        acc_t vv = (acc_t)beta2 * (acc_t)v + (acc_t)(1.0 - beta2) * (gv * gv);
        m = (T)mv;
        v = (T)vv;
        w = (T)((acc_t)w - (acc_t)(lr / bias_c1) * mv
                / (sqrt(vv) / (acc_t)sqrt(bias_c2) + (acc_t)eps));
        """,
        "arrayprop_adam_update",
        preamble=_PREAMBLE,
    )


def all_kernels() -> list[cupy.ElementwiseKernel]:
    """Every ElementwiseKernel this module can launch (built, not compiled: CuPy compiles on
    the first call, per dtype and device)."""
    out = [_elementwise(op, kind, inplace) for op, inplace in _SIGNATURES for kind in ACTIVATIONS]
    return [*out, _sgd_kernel(), _adam_kernel()]


# A GEMM that stays legal under CUDA stream capture, installed by .capture.CupyCapture while a
# CudaGraphStep warms up and captures a step: CuPy refuses every cuBLAS call on a capturing stream.
_gemm: Callable[[Any, Any], Any] | None = None


@contextmanager
def capturable_gemm(gemm: Callable[[Any, Any], Any]) -> Iterator[None]:
    """Within the block, :func:`matmul` and :func:`linear` call ``gemm(a, b)`` instead of
    ``cupy.matmul`` (not thread-safe: one capture at a time per process)."""
    global _gemm
    previous, _gemm = _gemm, gemm
    try:
        yield
    finally:
        _gemm = previous


def matmul(a, b):
    return cupy.matmul(a, b) if _gemm is None else _gemm(a, b)


def linear(x, w, b):
    # Z = X W on cuBLAS, then + b in one pass over Z, which this function owns (eq. 1).
    return bias_activation("identity", matmul(x, w), b, 0.0, True)


def bias_activation(kind, z, b, alpha, inplace):
    if inplace:
        return _elementwise("bias_act", kind, True)(b, alpha, z)
    return _elementwise("bias_act", kind, False)(z, b, alpha)


def activation(kind, z, alpha, inplace):
    if kind == "identity":
        return z
    if inplace:
        return _elementwise("act", kind, True)(alpha, z)
    return _elementwise("act", kind, False)(z, alpha)


def activation_grad(kind, a, grad_a, alpha, inplace):
    if kind == "identity":
        return grad_a
    if inplace:
        return _elementwise("grad", kind, True)(a, alpha, grad_a)
    return _elementwise("grad", kind, False)(a, grad_a, alpha)


def bias_grad(delta):
    # ∂C/∂b = Σ_rows δ (eq. 6), a new (out,) array: CuPy's reduction (CUB where enabled), which
    # accumulates float16 in float32 registers; no cuBLAS call, so it is legal under capture.
    return cupy.sum(delta, axis=0)


def sgd_update(w, g, lr):
    return _sgd_kernel()(g, lr, w)


def adam_update(w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2):
    _adam_kernel()(g, lr, beta1, beta2, eps, bias_c1, bias_c2, w, m, v)
    return w, m, v
