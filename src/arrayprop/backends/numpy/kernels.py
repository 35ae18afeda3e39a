"""NumPy fast paths: the portable primitives rewritten with in-place ufuncs.

Each function matches :mod:`arrayprop.kernels.portable` (tested in tests/kernels/ and
tests/backends/) but may reuse the buffer it is allowed to own (``inplace=True``), which saves
an allocation and a pass over memory per call. The NumPy backend names this module as its
``fast`` module; only :mod:`arrayprop.kernels` dispatches here. See docs/backends.md.
"""

from __future__ import annotations

import math

import numpy as np

from arrayprop.backends.numpy import blas as numpy_blas
from arrayprop.kernels import portable

#: Whether :func:`sgd_xt_delta_update` folds the update into one GEMM (else it is unfused).
FUSED_SGD = numpy_blas.GEMM is not None


def fused_sgd_status() -> str:
    """'on (library, symbol)' or 'off (reason)': whether the fold's BLAS binding is in use."""
    return numpy_blas.status()


def matmul(a, b):
    return np.matmul(a, b)


def linear(x, w, b):
    z = np.matmul(x, w)
    z += b
    return z


def bias_activation(kind, z, b, alpha, inplace):
    if inplace:
        z += b
    else:
        z = z + b
    # z is now a buffer this function owns either way.
    return activation(kind, z, alpha, True)


def activation(kind, z, alpha, inplace):
    if kind == "relu":
        return np.maximum(z, 0, out=z if inplace else None)
    if kind == "identity":
        return z
    if kind == "tanh":
        return np.tanh(z, out=z if inplace else None)
    return portable.activation(np, kind, z, alpha)


def activation_grad(kind, a, grad_a, alpha, inplace):
    if kind == "relu":
        return np.multiply(grad_a, a > 0, out=grad_a if inplace else None)
    if kind == "sigmoid" and inplace:
        # δ = g ⊙ a ⊙ (1 − a), two in-place passes and one temporary.
        grad_a *= a
        grad_a *= 1 - a
        return grad_a
    if kind == "tanh" and inplace:
        grad_a *= 1 - a * a
        return grad_a
    return portable.activation_grad(np, kind, a, grad_a, alpha)


#: (batch, dtype) -> a read-only vector of ones, for bias_grad (np.ones costs ~1.3 µs a call).
_ONES: dict = {}


def _ones(n, dtype):
    key = (n, dtype)
    v = _ONES.get(key)
    if v is None:
        if len(_ONES) > 32:  # many batch sizes (a sweep): start over rather than grow
            _ONES.clear()
        v = _ONES[key] = np.ones(n, dtype=dtype)
        v.flags.writeable = False
    return v


def bias_grad(delta):
    # A matrix-vector product with ones: BLAS reads δ once, 4x faster than a row reduction
    # over a C-ordered (batch, out) array.
    return _ones(delta.shape[0], delta.dtype) @ delta


def embedding_grad(indices, grad, num_embeddings):
    # A scatter-add (O(rows · dim)) instead of the portable one-hot GEMM, whose one-hot matrix
    # alone is rows × num_embeddings: for a vocabulary of 50 000 that is the larger cost.
    out = np.zeros((num_embeddings, grad.shape[1]), dtype=grad.dtype)
    np.add.at(out, indices, grad)  # eq. 41
    return out


def softmax_cross_entropy(z, y):
    n = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    shifted -= np.log(s)  # log softmax, in place
    value = -np.vdot(y, shifted) / n
    e /= s
    e -= y
    e /= n
    return np.asarray(value, dtype=z.dtype), e


def softmax_cross_entropy_labels(z, labels):
    # Gather / scatter the labelled column instead of building the one-hot matrix.
    n = z.shape[0]
    rows = np.arange(n)
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1)
    value = (np.log(s).sum() - shifted[rows, labels].sum()) / n
    e /= s[:, None]
    e[rows, labels] -= 1
    e /= n
    return np.asarray(value, dtype=z.dtype), e


def sgd_update(w, g, lr):
    w -= np.multiply(g, lr, dtype=w.dtype)
    return w


#: Fewer weights than this and the unfused update is faster: the CBLAS call costs ~8 µs of
#: ctypes overhead, more than the pass over W it saves (measured: 0.5-0.9x at 32x32, 64x64 and
#: 128x10; 1.1-1.9x at 128x128, up to 18x at 784x128, where NumPy's Xᵀδ is slow).
FUSE_MIN_WEIGHTS = 16384


def sgd_xt_delta_update(w, x, delta, lr):
    # W ← W − η Xᵀδ as one BLAS call (α = −η, β = 1) when NumPy's OpenBLAS is bound and W is
    # big enough; otherwise the gradient is formed and subtracted in place.
    if w.size < FUSE_MIN_WEIGHTS or not numpy_blas.add_xt_delta(w, x, delta, -lr):
        g = np.matmul(x.T, delta)
        g *= lr
        w -= g
    return w


def adam_update(w, g, m, v, lr, beta1, beta2, eps, bias_c1, bias_c2):
    # Updates the optimizer-owned buffers w, m, v in place; g is only read.
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    denom = np.sqrt(v)
    denom /= math.sqrt(bias_c2)
    denom += eps
    step = np.divide(m, denom)
    step *= lr / bias_c1
    w -= step
    return w, m, v
