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


def _offset_slice(a, i, j, stride, out_hw):
    """a[:, :, i::sh, j::sw] cut to out_hw (H_out, W_out): what window offset (i, j) reads."""
    (sh, sw), (h_out, w_out) = stride, out_hw
    return a[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]


def _pool_out(shape, kernel, stride):
    return (shape[2] - kernel[0]) // stride[0] + 1, (shape[3] - kernel[1]) // stride[1] + 1


def _max_pool_2x2(x):
    # 2x2 windows, stride 2: the four corners of each window are four strided views; three
    # maxima and three comparisons, no copy of the windows, the argmax as uint8.
    n, c, h, w = x.shape
    v = x[:, :, : h - h % 2, : w - w % 2].reshape(n, c, h // 2, 2, w // 2, 2)
    a, b, cc, d = v[:, :, :, 0, :, 0], v[:, :, :, 0, :, 1], v[:, :, :, 1, :, 0], v[:, :, :, 1, :, 1]
    top, bottom = np.maximum(a, b), np.maximum(cc, d)
    arg = np.greater(b, a).view(np.uint8)
    low = np.greater(d, cc).view(np.uint8)
    low += 2
    np.copyto(arg, low, where=bottom > top)  # ties between the rows go to the top (first)
    np.maximum(top, bottom, out=top)
    return top, arg


def max_pool(x, kernel, stride):
    # A running maximum over the kh·kw strided views of the window offsets (no copy of the
    # windows), the argmax updated where a later offset is strictly larger (first on ties).
    if kernel == stride == (2, 2):
        return _max_pool_2x2(x)
    kh, kw = kernel
    out_hw = _pool_out(x.shape, kernel, stride)
    y = np.array(_offset_slice(x, 0, 0, stride, out_hw))
    arg = np.zeros(y.shape, dtype=np.uint8 if kh * kw < 256 else np.intp)
    better = np.empty(y.shape, dtype=bool)
    for i in range(kh):
        for j in range(kw):
            if i or j:
                s = _offset_slice(x, i, j, stride, out_hw)
                np.greater(s, y, out=better)
                np.maximum(y, s, out=y)
                np.copyto(arg, i * kw + j, where=better)
    return y, arg


def max_pool_grad(grad, arg, input_shape, kernel, stride):
    # Per offset, the gradient where that offset was the argmax, written (non-overlapping
    # windows: each input entry belongs to one window) or added (overlapping) into its view.
    (kh, kw), (sh, sw) = kernel, stride
    out = np.zeros(input_shape, dtype=grad.dtype)
    out_hw = grad.shape[2:]
    zero = grad.dtype.type(0)
    for i in range(kh):
        for j in range(kw):
            dst = _offset_slice(out, i, j, stride, out_hw)
            if sh >= kh and sw >= kw:
                np.multiply(grad, arg == i * kw + j, out=dst)
            else:
                np.add(dst, np.where(arg == i * kw + j, grad, zero), out=dst)
    return out


def avg_pool(x, kernel, stride):
    # The sum of the kh·kw strided views, scaled: no copy of the windows.
    kh, kw = kernel
    out_hw = _pool_out(x.shape, kernel, stride)
    y = np.array(_offset_slice(x, 0, 0, stride, out_hw))
    for i in range(kh):
        for j in range(kw):
            if i or j:
                y += _offset_slice(x, i, j, stride, out_hw)
    y /= kh * kw
    return y


def avg_pool_grad(grad, input_shape, kernel, stride):
    (kh, kw), (sh, sw) = kernel, stride
    share = grad / (kh * kw)
    out = np.zeros(input_shape, dtype=grad.dtype)
    for i in range(kh):
        for j in range(kw):
            dst = _offset_slice(out, i, j, stride, grad.shape[2:])
            if sh >= kh and sw >= kw:
                np.copyto(dst, share)
            else:
                np.add(dst, share, out=dst)
    return out


def _cols(x, kernel, stride, padding, workspace=None):
    """The im2col matrix channel-major: (C·kh·kw, N·H_out·W_out), rows (c, i, j), columns
    (n, p, q), filled by kh·kw copies of strided views of the padded input (rows of W_out
    contiguous), into ``workspace`` when it is a spent matrix of that size and dtype."""
    (kh, kw), (ph, pw) = kernel, padding
    xp_ = _padded(x, ph, pw)
    n, c = x.shape[:2]
    out_hw = _pool_out(xp_.shape, kernel, stride)
    shape = (c, kh, kw, n, *out_hw)
    if (
        isinstance(workspace, np.ndarray)
        and workspace.dtype == x.dtype
        and workspace.size == math.prod(shape)
        and workspace.flags.c_contiguous
        and workspace.flags.writeable
    ):
        # A fresh buffer of megabytes costs page faults on every step (the allocator hands
        # large blocks back to the OS); refilling the last step's spent one does not.
        cols = workspace.reshape(shape)
    else:
        cols = np.empty(shape, dtype=x.dtype)
    channels_first = xp_.transpose(1, 0, 2, 3)  # a view (C, N, H_p, W_p)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = _offset_slice(channels_first, i, j, stride, out_hw)
    return cols.reshape(c * kh * kw, -1)


#: conv2d accepts the ``saved`` matrix of a finished conv2d_grad as its workspace.
CONV2D_WORKSPACE = True


def conv2d(x, w, b, kernel, stride, padding, workspace=None):
    # One GEMM over the whole batch, W_mat · cols -> (O, N·H_out·W_out) (one BLAS call, not
    # one per sample), then bias and the move to NCHW in one pass.
    n, o = x.shape[0], w.shape[0]
    cols = _cols(x, kernel, stride, padding, workspace)  # eq. 29
    z = np.matmul(w.reshape(o, -1), cols)  # eq. 30
    out_hw = _pool_out(_padded_shape(x.shape, padding), kernel, stride)
    out = np.empty((n, o, *out_hw), dtype=z.dtype)
    np.add(z.reshape(o, n, *out_hw).transpose(1, 0, 2, 3), b[:, None, None], out=out)
    return out, cols


def _padded_shape(shape, padding):
    return (*shape[:2], shape[2] + 2 * padding[0], shape[3] + 2 * padding[1])


def conv2d_grad(grad_out, cols, w, input_shape, kernel, stride, padding, input_grad):
    o = grad_out.shape[1]
    delta = np.ascontiguousarray(grad_out.transpose(1, 0, 2, 3))  # (O, N, H_out, W_out)
    flat = delta.reshape(o, -1)
    grad_w = np.matmul(flat, cols.T).reshape(w.shape)  # eq. 31
    grad_b = flat.sum(axis=1)  # eq. 31
    if not input_grad:
        return None, grad_w, grad_b
    if stride == (1, 1):
        return _input_grad_stride1(delta, w, input_shape, padding), grad_w, grad_b
    grad_cols = np.matmul(w.reshape(o, -1).T, flat)  # eq. 32
    return _col2im(grad_cols, input_shape, kernel, stride, padding), grad_w, grad_b


def _col2im(grad_cols, input_shape, kernel, stride, padding):
    """The adjoint of :func:`_cols`: kh·kw in-place adds into strided views of a channel-major
    (C, N, H_p, W_p) gradient, cropped and moved to NCHW."""
    (kh, kw), (ph, pw) = kernel, padding
    n, c, h, w = input_shape
    hp, wp = h + 2 * ph, w + 2 * pw
    out = np.zeros((c, n, hp, wp), dtype=grad_cols.dtype)
    out_hw = _pool_out(out.shape, kernel, stride)
    g = grad_cols.reshape(c, kh, kw, n, *out_hw)
    for i in range(kh):
        for j in range(kw):
            dst = _offset_slice(out, i, j, stride, out_hw)
            np.add(dst, g[:, i, j], out=dst)  # eq. 33
    return np.ascontiguousarray(out[:, :, ph : ph + h, pw : pw + w].transpose(1, 0, 2, 3))


def _input_grad_stride1(delta, w, input_shape, padding):
    """∂C/∂X of a stride-1 convolution (eqs. 32-33) from δ (O, N, H_out, W_out), without the
    (C·kh·kw, N·H_out·W_out) gradient of cols: δ on the padded (H_p, W_p) grid (zeros outside
    the H_out × W_out outputs), flattened; kernel offset (i, j) then adds W[:, :, i, j]ᵀ δ to
    the flat input gradient shifted by i·W_p + j, one contiguous GEMM and add per offset."""
    (ph, pw), (n, c, h, wd) = padding, input_shape
    o, _, kh, kw = w.shape
    hp, wp = h + 2 * ph, wd + 2 * pw
    h_out, w_out = hp - kh + 1, wp - kw + 1
    grid = np.zeros((o, n, hp, wp), dtype=delta.dtype)
    grid[:, :, :h_out, :w_out] = delta
    flat = grid.reshape(o, -1)
    size = flat.shape[1]
    out = np.zeros((c, size + (kh - 1) * wp + kw - 1), dtype=delta.dtype)
    wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (kh, kw, C, O)
    for i in range(kh):
        for j in range(kw):
            dst = out[:, i * wp + j : i * wp + j + size]
            # With NumPy's OpenBLAS bound: one GEMM with β = 1 straight into the shifted view
            # (no product array, no add pass); else the product, then an in-place add.
            if not numpy_blas.add_product(dst, wt[i, j], flat):
                np.add(dst, wt[i, j] @ flat, out=dst)
    grad = out[:, :size].reshape(c, n, hp, wp)[:, :, ph : ph + h, pw : pw + wd]
    return np.ascontiguousarray(grad.transpose(1, 0, 2, 3))
