"""PyTorch fast paths: fused bias GEMMs, in-place activations and updates, bfloat16 GEMM layout.

Each function matches :mod:`arrayprop.kernels.portable` (tested in tests/kernels/) and may reuse
the buffer it is allowed to own (``inplace=True``). The PyTorch backend names this module as its
``fast`` module; only :mod:`arrayprop.kernels` dispatches here.

bfloat16 on a CPU without oneDNN's bfloat16 GEMM (no AVX-512 and no AMX: :func:`bf16_gemm_path`
is ``"aten"``): PyTorch falls back to its own GEMM loops, whose speed depends on the operands'
layout by more than ten times. Only the variant whose first operand is column-major (a
transposed view) runs as vectorised dot products with float32 accumulation; the row-major
``A @ B`` of every forward pass runs about 15x slower (docs/precision.md has the figures).
:func:`matmul` and :func:`linear` therefore copy ``A`` to column-major and ``B`` to row-major
first, O(mk + kn) against the GEMM's O(mkn). The values are the same: each output element is one
dot product accumulated in float32 either way. See docs/precision.md.
"""

from __future__ import annotations

import functools

import torch

from arrayprop.backends import cpu
from arrayprop.kernels import portable

__all__ = [
    "activation",
    "activation_grad",
    "adam_update",
    "bf16_gemm_path",
    "bias_activation",
    "bias_grad",
    "gemm_operands",
    "linear",
    "matmul",
    "sgd_update",
]


@functools.cache
def bf16_gemm_path() -> str:
    """Which code runs a bfloat16 GEMM on the CPU here: ``"onednn"`` (AMX-BF16, AVX512-BF16 or
    AVX-512 conversion) or ``"aten"`` (PyTorch's own loops, where the layout matters).

    Asks PyTorch (``torch.ops.mkldnn._is_mkldnn_bf16_supported``), else decides by the CPU flags
    as PyTorch does (AVX-512 BW/VL/DQ).
    """
    if not torch.backends.mkldnn.is_available():
        return "aten"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        units = cpu.bf16_units()
        native = bool(units["units"]) or bool(units["avx512"])
    return "onednn" if native else "aten"


def gemm_operands(a, b):
    """(a, b) as :func:`matmul` hands them to PyTorch: for 2-D bfloat16 CPU operands on the
    ``"aten"`` path (:func:`bf16_gemm_path`), ``a`` column-major and ``b`` row-major (copies
    where they are not); otherwise unchanged."""
    if a.dtype != torch.bfloat16 or a.device.type != "cpu" or a.ndim != 2 or b.ndim != 2:
        return a, b
    if bf16_gemm_path() != "aten":
        return a, b
    if a.stride(0) != 1:  # not already a transposed view of a contiguous array
        a = a.T.contiguous().T
    return a, b.contiguous()


def matmul(a, b):
    a, b = gemm_operands(a, b)
    return torch.matmul(a, b)


def linear(x, w, b):
    if x.ndim != 2:
        return portable.linear(torch, x, w, b)
    x, w = gemm_operands(x, w)
    return torch.addmm(b, x, w)  # the bias added inside the GEMM's output pass


def bias_activation(kind, z, b, alpha, inplace):
    z = z.add_(b) if inplace else z + b
    # z is now a buffer this function owns either way.
    return activation(kind, z, alpha, True)


def activation(kind, z, alpha, inplace):
    if kind == "relu":
        return torch.relu_(z) if inplace else torch.relu(z)
    if kind == "identity":
        return z
    if kind == "tanh":
        return torch.tanh_(z) if inplace else torch.tanh(z)
    return portable.activation(torch, kind, z, alpha)


def activation_grad(kind, a, grad_a, alpha, inplace):
    return portable.activation_grad(torch, kind, a, grad_a, alpha)


def bias_grad(delta):
    return torch.sum(delta, dim=0)


def sgd_update(w, g, lr):
    # W ← W − η G in place (the optimizer owns W); mixed dtypes promote as W's dtype.
    return w.sub_(g * lr)


def adam_update(w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2):
    return portable.adam_update(torch, w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2)
