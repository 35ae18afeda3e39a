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


def _padded(x, ph, pw):
    if not (ph or pw):
        return x
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def conv_windows(x, kernel, stride, padding=(0, 0)):
    """A read-only strided view (N, H_out, W_out, C, kh, kw) of the zero-padded x: no copy."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp_ = _padded(x, ph, pw)
    n, c, hp, wp = xp_.shape
    h_out, w_out = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    s0, s1, s2, s3 = xp_.strides
    return np.lib.stride_tricks.as_strided(
        xp_,
        shape=(n, h_out, w_out, c, kh, kw),
        strides=(s0, s2 * sh, s3 * sw, s1, s2, s3),
        writeable=False,
    )


def conv_cols(x, kernel, stride, padding):
    # One copy, straight from a strided view of the padded input into the im2col matrix
    # (the portable version stacks kh·kw slices, then permutes: two copies and a concat pad).
    win = conv_windows(x, kernel, stride, padding)
    n, h_out, w_out, c, kh, kw = win.shape
    out = np.empty(win.shape, dtype=x.dtype)  # always a new array, never a view of x
    out[...] = win
    return out.reshape(n * h_out * w_out, c * kh * kw)


def conv_col2im(grad_cols, input_shape, kernel, stride, padding):
    # kh·kw in-place strided adds into one zero array (the portable version pads a full-size
    # copy per kernel offset and sums them).
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = input_shape
    h_out, w_out = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    g = grad_cols.reshape(n, h_out, w_out, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad_cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw] += g[
                :, :, i, j
            ]
    return out[:, :, ph : ph + h, pw : pw + w] if (ph or pw) else out


def _pool_windows(x, kernel, stride):
    """A read-only strided view (N, C, H_out, W_out, kh, kw) of x's windows: no copy."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
    s0, s1, s2, s3 = x.strides
    return np.lib.stride_tricks.as_strided(
        x,
        shape=(n, c, h_out, w_out, kh, kw),
        strides=(s0, s1, s2 * sh, s3 * sw, s2, s3),
        writeable=False,
    )


def _scatter_windows(parts, input_shape, kernel, stride, dtype):
    """Σ over offsets (i, j) of ``parts(i, j)`` (N, C, H_out, W_out) added in place where the
    windows read offset (i, j): the adjoint of :func:`_pool_windows`."""
    (kh, kw), (sh, sw) = kernel, stride
    h, w = input_shape[2], input_shape[3]
    h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros(input_shape, dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw] += (
                parts(i, j)
            )
    return out


def max_pool(x, kernel, stride):
    # One copy of the windows into (N, C, H_out, W_out, kh·kw) for argmax; the portable
    # version stacks kh·kw slices into (N, C, kh·kw, H_out, W_out) and reduces across them.
    win = _pool_windows(x, kernel, stride)
    flat = win.reshape(*win.shape[:4], -1)
    arg = flat.argmax(axis=-1)
    return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0], arg


def max_pool_grad(grad, arg, input_shape, kernel, stride):
    kw = kernel[1]
    zero = grad.dtype.type(0)
    return _scatter_windows(
        lambda i, j: np.where(arg == i * kw + j, grad, zero),
        input_shape,
        kernel,
        stride,
        grad.dtype,
    )


def avg_pool(x, kernel, stride):
    # The mean over a strided view: no copy of the windows.
    return _pool_windows(x, kernel, stride).mean(axis=(4, 5), dtype=x.dtype)


def avg_pool_grad(grad, input_shape, kernel, stride):
    share = grad / (kernel[0] * kernel[1])
    return _scatter_windows(lambda i, j: share, input_shape, kernel, stride, grad.dtype)
