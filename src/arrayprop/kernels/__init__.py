"""Hot-path primitives behind one name each, with per-backend fast paths.

Layers and optimizers call these functions with their :class:`~arrayprop.Backend`; this module
picks the implementation. :mod:`.portable` holds the Array API reference version of every
primitive; a backend whose adapter has a fast-kernel module (:attr:`Backend.fast
<arrayprop.Backend.fast>`) gets the optimised one (NumPy: in-place ufuncs and a fused SGD GEMM
in ``backends/numpy/``; CuPy: fused elementwise kernels around cuBLAS in ``backends/cupy/``;
PyTorch: the bias inside ``addmm``, in-place updates and emulated bfloat16 GEMMs in
``backends/torch/``). A fast module that cannot be imported (CuPy not installed) leaves the
portable version in charge.
Fast paths may overwrite an argument only when the caller passes ``inplace=True``, i.e. when it
owns that buffer, and the optimizer updates overwrite the optimizer-owned weights and state; the
portable versions never modify an argument.

``ARRAYPROP_KERNELS=portable`` (or :func:`use_portable`) turns the fast paths off, which is how
the tests compare the two. See docs/backends.md.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType
from typing import Any

from arrayprop.backends import Backend, get_backend
from arrayprop.kernels import portable
from arrayprop.kernels.portable import ACTIVATIONS

__all__ = [
    "ACTIVATIONS",
    "activation",
    "activation_grad",
    "adam_update",
    "avg_pool",
    "avg_pool_grad",
    "bias_activation",
    "bias_grad",
    "conv2d",
    "conv2d_grad",
    "conv2d_workspace",
    "conv_col2im",
    "conv_cols",
    "embedding_grad",
    "expect_overflow",
    "fused_sgd",
    "fused_sgd_status",
    "linear",
    "matmul",
    "max_pool",
    "max_pool_grad",
    "portable",
    "sgd_update",
    "sgd_xt_delta_update",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_labels",
    "use_portable",
]

_state = {"portable": os.environ.get("ARRAYPROP_KERNELS", "").lower() == "portable"}


def _fast(backend: Backend) -> ModuleType | None:
    """The backend's fast-kernel module, unless portable kernels are selected."""
    if _state["portable"]:
        return None
    return backend.fast


@contextmanager
def use_portable(enabled: bool = True):
    """Within the block, every primitive runs its portable Array API version."""
    previous = _state["portable"]
    _state["portable"] = enabled
    try:
        yield
    finally:
        _state["portable"] = previous


def expect_overflow(backend: Backend) -> AbstractContextManager[Any]:
    """Within the block inf and NaN are expected results (loss scaling probes for overflow):
    NumPy-based backends do not warn about them. :meth:`Backend.expect_overflow
    <arrayprop.Backend.expect_overflow>`, kept here for callers of the kernels."""
    return backend.expect_overflow()


def matmul(backend, a, b):
    """A B. a (m, k), b (k, n) -> (m, n), a new array (the GEMMs of the backward pass)."""
    fast = _fast(backend)
    return fast.matmul(a, b) if fast else portable.matmul(backend.xp, a, b)


def linear(backend, x, w, b):
    """Z = X W + b. x (batch, in), w (in, out), b (out,) -> (batch, out), a new array."""
    fast = _fast(backend)
    return fast.linear(x, w, b) if fast else portable.linear(backend.xp, x, w, b)


def bias_activation(backend, kind, z, b, alpha=0.0, *, inplace=False):
    """A = f(Z + b) for z (batch, out) from a GEMM, b (out,); may reuse ``z`` when ``inplace``."""
    fast = _fast(backend)
    if fast:
        return fast.bias_activation(kind, z, b, alpha, inplace)
    return portable.bias_activation(backend.xp, kind, z, b, alpha)


def activation(backend, kind, z, alpha=0.0, *, inplace=False):
    """A = f(Z); may reuse ``z``'s buffer when ``inplace``."""
    fast = _fast(backend)
    if fast:
        return fast.activation(kind, z, alpha, inplace)
    return portable.activation(backend.xp, kind, z, alpha)


def activation_grad(backend, kind, a, grad_a, alpha=0.0, *, inplace=False):
    """δ = ∂C/∂A ⊙ f'(Z) from the cached output A; may reuse ``grad_a`` when ``inplace``."""
    fast = _fast(backend)
    if fast:
        return fast.activation_grad(kind, a, grad_a, alpha, inplace)
    return portable.activation_grad(backend.xp, kind, a, grad_a, alpha)


def softmax(backend, z):
    """Row-wise, max-shifted softmax of z (batch, classes)."""
    return portable.softmax(backend.xp, z)


def bias_grad(backend, delta):
    """∂C/∂b = Σ_rows δ. delta (batch, out) -> (out,), a new array."""
    fast = _fast(backend)
    return fast.bias_grad(delta) if fast else portable.bias_grad(backend.xp, delta)


def embedding_grad(backend, indices, grad, num_embeddings):
    """∂C/∂W of an embedding (eq. 41): rows of grad (rows, dim) scatter-added into the rows
    ``indices`` (rows,) names, repeated indices accumulating. -> (num_embeddings, dim)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "embedding_grad"):
        return fast.embedding_grad(indices, grad, num_embeddings)
    return portable.embedding_grad(backend.xp, indices, grad, num_embeddings)


def softmax_cross_entropy(backend, z, y):
    """(C, ∂C/∂z) of softmax + cross-entropy on logits z (n, k), target rows y (n, k)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "softmax_cross_entropy"):
        return fast.softmax_cross_entropy(z, y)
    return portable.softmax_cross_entropy(backend.xp, z, y)


def softmax_cross_entropy_labels(backend, z, labels):
    """(C, ∂C/∂z) of softmax + cross-entropy on logits z (n, k), integer labels (n,)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "softmax_cross_entropy_labels"):
        return fast.softmax_cross_entropy_labels(z, labels)
    return portable.softmax_cross_entropy_labels(backend.xp, z, labels)


def sgd_update(backend, w, g, lr):
    """W ← W − η G. Returns the updated weights (the same buffer on mutable backends)."""
    fast = _fast(backend)
    return fast.sgd_update(w, g, lr) if fast else portable.sgd_update(backend.xp, w, g, lr)


def fused_sgd(backend) -> bool:
    """Whether :func:`sgd_xt_delta_update` on this backend is one in-place GEMM that never
    writes the weight gradient (NumPy with its OpenBLAS bound, see
    :mod:`arrayprop.backends.numpy.blas`). Only then does ``SGD(fused="auto")`` fold."""
    fast = _fast(backend)
    return bool(fast and getattr(fast, "FUSED_SGD", False))


def fused_sgd_status() -> str:
    """One line for ``arrayprop info`` and benchmark reports: is the NumPy fold on, and why not."""
    if _state["portable"]:
        return "off (portable kernels)"
    fast = get_backend("numpy").fast
    if fast is None:
        return "off (NumPy fast paths unavailable)"
    return fast.fused_sgd_status()


def sgd_xt_delta_update(backend, w, x, delta, lr):
    """W ← W − η Xᵀδ for a weight whose gradient is the product Xᵀδ (eq. 7a), without storing
    the gradient where the backend can (NumPy with its BLAS bound: one GEMM with β = 1).
    w (in, out), x (rows, in), delta (rows, out); returns W, the same buffer on NumPy."""
    fast = _fast(backend)
    if fast and hasattr(fast, "sgd_xt_delta_update"):
        return fast.sgd_xt_delta_update(w, x, delta, lr)
    return portable.sgd_xt_delta_update(backend.xp, w, x, delta, lr)


def adam_update(backend, w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2):
    """One Adam step; returns (W, m, v), the same buffers on mutable backends.

    ``bias_c1 = 1 − β₁ᵗ`` and ``bias_c2 = 1 − β₂ᵗ`` are the bias corrections of step t (see
    :func:`.portable.adam_update`). The fast paths update ``w``, ``m`` and ``v`` in place, so the
    caller must own them (optimizer state, not a view of someone else's array).
    """
    fast = _fast(backend)
    args = (w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2)
    return fast.adam_update(*args) if fast else portable.adam_update(backend.xp, *args)


def conv_cols(backend, x, kernel, stride, padding):
    """The im2col matrix (N·H_out·W_out, C·kh·kw) of x (N, C, H, W) (eq. 29), a new array."""
    fast = _fast(backend)
    if fast and hasattr(fast, "conv_cols"):
        return fast.conv_cols(x, kernel, stride, padding)
    return portable.conv_cols(backend.xp, x, kernel, stride, padding)


def conv_col2im(backend, grad_cols, input_shape, kernel, stride, padding):
    """∂C/∂X (N, C, H, W) from ∂C/∂cols (N·H_out·W_out, C·kh·kw), the adjoint of
    :func:`conv_cols` (eq. 33), a new array."""
    fast = _fast(backend)
    if fast and hasattr(fast, "conv_col2im"):
        return fast.conv_col2im(grad_cols, input_shape, kernel, stride, padding)
    return portable.conv_col2im(backend.xp, grad_cols, input_shape, kernel, stride, padding)


def conv2d(backend, x, w, b, kernel, stride, padding, workspace=None):
    """(Z, saved): the convolution Z (N, O, H_out, W_out) of x (N, C, H, W) with w (O, C, kh,
    kw) plus b (O,) (eqs. 29-30), and what :func:`conv2d_grad` needs (opaque: its layout is
    the implementation's). Without a fast ``conv2d``: one GEMM over :func:`conv_cols`'s im2col
    matrix, ``saved`` that matrix.

    ``workspace``: a ``saved`` whose :func:`conv2d_grad` has run, which the caller owns and
    will not read again, for the fast path to refill (see :func:`conv2d_workspace`); ignored
    elsewhere."""
    fast = _fast(backend)
    if fast and hasattr(fast, "conv2d"):
        if getattr(fast, "CONV2D_WORKSPACE", False):
            return fast.conv2d(x, w, b, kernel, stride, padding, workspace)
        return fast.conv2d(x, w, b, kernel, stride, padding)
    xp = backend.xp
    n, o = x.shape[0], w.shape[0]
    cols = conv_cols(backend, x, kernel, stride, padding)  # eq. 29
    z = linear(backend, cols, xp.reshape(w, (o, -1)).T, b)  # eq. 30
    h_out = portable.conv_output_size(x.shape[2], kernel[0], stride[0], padding[0])
    w_out = portable.conv_output_size(x.shape[3], kernel[1], stride[1], padding[1])
    return xp.permute_dims(xp.reshape(z, (n, h_out, w_out, o)), (0, 3, 1, 2)), cols


def conv2d_grad(backend, grad_out, saved, w, input_shape, kernel, stride, padding, input_grad):
    """(∂C/∂X or None, ∂C/∂W, ∂C/∂b) of :func:`conv2d` from δ = ``grad_out`` (N, O, H_out,
    W_out) and the ``saved`` it returned (eqs. 31-33); no input gradient (no col2im) when
    ``input_grad`` is false."""
    fast = _fast(backend)
    if fast and hasattr(fast, "conv2d_grad"):
        return fast.conv2d_grad(
            grad_out, saved, w, input_shape, kernel, stride, padding, input_grad
        )
    xp = backend.xp
    o = w.shape[0]
    w_mat = xp.reshape(w, (o, -1))
    delta = xp.reshape(xp.permute_dims(grad_out, (0, 2, 3, 1)), (-1, o))
    grad_w = xp.reshape(matmul(backend, delta.T, saved), tuple(w.shape))  # eq. 31
    grad_b = bias_grad(backend, delta)  # eq. 31
    if not input_grad:
        return None, grad_w, grad_b
    grad_cols = matmul(backend, delta, w_mat)  # eq. 32
    grad_x = conv_col2im(backend, grad_cols, input_shape, kernel, stride, padding)  # eq. 33
    return grad_x, grad_w, grad_b


def conv2d_workspace(backend) -> bool:
    """Whether :func:`conv2d` on this backend reuses a spent ``saved`` passed as its
    ``workspace`` (NumPy: it saves a fresh multi-megabyte allocation, and its page faults, per
    step); where it does not, a caller should not keep one."""
    fast = _fast(backend)
    return bool(fast and hasattr(fast, "conv2d") and getattr(fast, "CONV2D_WORKSPACE", False))


def max_pool(backend, x, kernel, stride):
    """(Y, A): the maximum of each window of x (N, C, H, W) and its position ``i·kw + j`` in the
    window (the first on ties), both (N, C, H_out, W_out) (eq. 34)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "max_pool"):
        return fast.max_pool(x, kernel, stride)
    return portable.max_pool(backend.xp, x, kernel, stride)


def max_pool_grad(backend, grad, arg, input_shape, kernel, stride):
    """∂C/∂X (N, C, H, W) of max pooling: ``grad`` routed to the argmax ``arg`` (eq. 35)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "max_pool_grad"):
        return fast.max_pool_grad(grad, arg, input_shape, kernel, stride)
    return portable.max_pool_grad(backend.xp, grad, arg, input_shape, kernel, stride)


def avg_pool(backend, x, kernel, stride):
    """The mean of each window of x (N, C, H, W) -> (N, C, H_out, W_out) (eq. 36)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "avg_pool"):
        return fast.avg_pool(x, kernel, stride)
    return portable.avg_pool(backend.xp, x, kernel, stride)


def avg_pool_grad(backend, grad, input_shape, kernel, stride):
    """∂C/∂X (N, C, H, W) of average pooling (eq. 36)."""
    fast = _fast(backend)
    if fast and hasattr(fast, "avg_pool_grad"):
        return fast.avg_pool_grad(grad, input_shape, kernel, stride)
    return portable.avg_pool_grad(backend.xp, grad, input_shape, kernel, stride)
