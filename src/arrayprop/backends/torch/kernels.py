"""PyTorch fast paths: fused bias GEMMs, in-place activations and updates, emulated bf16 GEMMs.

Each function matches :mod:`arrayprop.kernels.portable` (tested in tests/kernels/) and may reuse
the buffer it is allowed to own (``inplace=True``). The PyTorch backend names this module as its
``fast`` module; only :mod:`arrayprop.kernels` dispatches here.

bfloat16 on a CPU without oneDNN's bfloat16 GEMM (no AVX-512 and no AMX: :func:`bf16_gemm_path`
is ``"aten"``): PyTorch falls back to its own GEMM loops, 4x (column-major A) to 70x (row-major
A, every forward pass) slower than its float32 GEMM on the same CPU. There :func:`matmul` and
:func:`linear` up-cast the operands to float32, run the float32 GEMM and round the result to
bfloat16 once, 3.5x faster than the best bfloat16 layout (docs/precision.md has the figures).
The values are those of a bfloat16 GEMM: a product of two bfloat16 numbers is exact in float32,
and bfloat16 GEMMs accumulate in float32 too; only the order of the sums may differ.
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
    "cpu_capability",
    "emulated",
    "linear",
    "matmul",
    "sgd_update",
]


@functools.cache
def bf16_gemm_path() -> str:
    """Which code runs a bfloat16 GEMM on the CPU here: ``"onednn"`` (AMX-BF16, AVX512-BF16 or
    AVX-512 conversion) or ``"aten"`` (PyTorch's own loops, slower than its float32 GEMM).

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


def cpu_capability() -> str:
    """The SIMD level PyTorch's CPU kernels were dispatched for here ("AVX2", "AVX512", ...)."""
    return str(torch.backends.cpu.get_cpu_capability())


def emulated(a) -> bool:
    """Whether a GEMM on ``a`` runs in float32 here: a bfloat16 CPU tensor on the ``"aten"``
    path (:func:`bf16_gemm_path`)."""
    return a.dtype == torch.bfloat16 and a.device.type == "cpu" and bf16_gemm_path() == "aten"


def matmul(a, b):
    if emulated(a):
        return torch.matmul(a.float(), b.float()).to(torch.bfloat16)
    return torch.matmul(a, b)


def linear(x, w, b):
    if x.ndim != 2:
        return portable.linear(torch, x, w, b)
    if emulated(x):
        return torch.addmm(b.float(), x.float(), w.float()).to(torch.bfloat16)
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
    # W ← W − η G in place (the optimizer owns W), one pass: no η G temporary.
    return w.add_(g, alpha=-lr)


def adam_update(w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2):
    return portable.adam_update(torch, w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2)
