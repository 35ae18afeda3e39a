"""Reference implementations of the hot-path primitives, in the Array API standard only.

These are the definitions: every backend-specific fast path in this package is tested against
them. Each function takes the namespace ``xp`` first and never modifies its arguments.
Equation numbers refer to docs/math.md.
"""

from __future__ import annotations

from typing import Any

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")


def linear(xp, x, w, b) -> Any:
    """Z = X W + b  (eq. 1).

    x : shape (batch, in), w : shape (in, out), b : shape (out,) -> shape (batch, out)
    """
    return x @ w + b  # eq. 1


def matmul(xp, a, b) -> Any:
    """A B for 2-D arrays: a (m, k), b (k, n) -> (m, n). The GEMMs of eqs. 1, 4 and 5."""
    return a @ b


def sigmoid(xp, z) -> Any:
    """σ(z) = 1 / (1 + e^{-z}), evaluated through e^{-|z|} so that no exponential overflows."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activation(xp, kind: str, z, alpha: float = 0.0) -> Any:
    """A = f(Z) elementwise (eq. 2)."""
    if kind == "relu":
        return xp.maximum(z, 0.0)  # eq. 2
    if kind == "leaky_relu":
        return xp.where(z > 0, z, alpha * z)  # eq. 2
    if kind == "sigmoid":
        return sigmoid(xp, z)  # eq. 2
    if kind == "tanh":
        return xp.tanh(z)  # eq. 2
    if kind == "identity":
        return z
    raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")


def bias_activation(xp, kind: str, z, b, alpha: float = 0.0) -> Any:
    """A = f(Z + b) (eqs. 1–2 after the GEMM): z (batch, out), b (out,) broadcast over the rows."""
    return activation(xp, kind, z + b, alpha)  # eq. 1, eq. 2


def activation_grad(xp, kind: str, a, grad_a, alpha: float = 0.0) -> Any:
    """δ = ∂C/∂A ⊙ f'(Z) (eqs. 3–4), with f' written in terms of the cached output A (eq. 9).

    relu: f' = [a > 0]; leaky relu (alpha > 0): f' = 1 if a > 0 else alpha;
    sigmoid: f' = a (1 - a); tanh: f' = 1 - a².
    """
    if kind == "relu":
        return xp.where(a > 0, grad_a, 0.0)  # eq. 9
    if kind == "leaky_relu":
        return xp.where(a > 0, grad_a, alpha * grad_a)  # eq. 9
    if kind == "sigmoid":
        return grad_a * a * (1.0 - a)  # eq. 9
    if kind == "tanh":
        return grad_a * (1.0 - a * a)  # eq. 9
    if kind == "identity":
        return grad_a
    raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")


def softmax(xp, z) -> Any:
    """Softmax over the last axis, shifted by the row maximum so that no exponential overflows."""
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def bias_grad(xp, delta) -> Any:
    """∂C/∂b = Σ_rows δ  (eq. 6). delta : (batch, out) -> (out,)."""
    return xp.sum(delta, axis=0)  # eq. 6


def softmax_cross_entropy(xp, z, y) -> tuple[Any, Any]:
    """Fused softmax + cross-entropy on logits z (n, k) and target rows y (n, k).

    C = −(1/n) Σ y ⊙ log softmax(z), with log softmax = z − max − log Σ e^{z − max}
    (log-sum-exp: finite for any logits); ∂C/∂z = (softmax(z) − y) / n  (eq. 8).
    Returns (C as a 0-d array, ∂C/∂z).
    """
    n = z.shape[0]
    shifted = z - xp.max(z, axis=1, keepdims=True)
    e = xp.exp(shifted)
    s = xp.sum(e, axis=1, keepdims=True)
    value = -xp.sum(y * (shifted - xp.log(s))) / n
    return value, (e / s - y) / n  # eq. 8


def softmax_cross_entropy_labels(xp, z, labels) -> tuple[Any, Any]:
    """:func:`softmax_cross_entropy` with integer labels (n,) in [0, k): y = one_hot(labels)."""
    k = z.shape[1]
    y = xp.astype(labels[:, None] == xp.arange(k, dtype=labels.dtype, device=z.device), z.dtype)
    return softmax_cross_entropy(xp, z, y)


def sgd_update(xp, w, g, lr: float) -> Any:
    """W ← W − η ∂C/∂W  (eq. 7). Returns the new weights."""
    return w - lr * g  # eq. 7


def sgd_xt_delta_update(xp, w, x, delta, lr: float) -> Any:
    """Plain SGD on a weight whose gradient is Xᵀδ (eq. 7 with eq. 5, i.e. eq. 7a):
    W ← W − η Xᵀδ. Returns the new W.

    x : (rows, in), delta : (rows, out), w : (in, out)
    """
    return w - lr * (x.T @ delta)  # eq. 7a


def adam_update(
    xp,
    w,
    g,
    m,
    v,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_c1: float,
    bias_c2: float,
) -> tuple[Any, Any, Any]:
    """One Adam step (eq. 7 with Adam's direction u; docs/optimizers.md), as ``torch.optim.Adam``.

    m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;  W ← W − η / c₁ · m / (√v / √c₂ + ε),
    with the bias corrections c₁ = 1 − β₁ᵗ and c₂ = 1 − β₂ᵗ of step t. Returns (W, m, v).
    """
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * (g * g)
    w = w - (lr / bias_c1) * m / (xp.sqrt(v) / bias_c2**0.5 + eps)
    return w, m, v


def embedding_grad(xp, indices, grad, num_embeddings: int) -> Any:
    """∂C/∂W of an embedding: the rows of ``grad`` summed into the rows ``indices`` names.

    The Array API has no scatter-add, so the sum is one GEMM with the one-hot matrix of the
    indices, Oᵀ G with O[r, j] = [indices[r] = j]: repeated indices accumulate, no Python loop.
    It costs O(rows · num_embeddings) memory for O and O(rows · num_embeddings · dim) flops.
    indices (rows,) int, grad (rows, dim) -> (num_embeddings, dim), a new array.
    """
    onehot = xp.astype(
        xp.expand_dims(indices, axis=1) == xp.arange(num_embeddings, dtype=indices.dtype),
        grad.dtype,
    )  # (rows, num_embeddings)
    return xp.matmul(xp.matrix_transpose(onehot), grad)  # eq. 41


# --------------------------------------------------------------------------- convolution


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _zeros_like_axis(xp, x, axis: int, n: int) -> Any:
    shape = list(x.shape)
    shape[axis] = n
    return xp.zeros(tuple(shape), dtype=x.dtype, device=x.device)


def pad_axis(xp, x, axis: int, before: int, after: int) -> Any:
    """``x`` with ``before`` and ``after`` zeros along ``axis`` (the standard has no ``pad``)."""
    parts = [_zeros_like_axis(xp, x, axis, before)] if before else []
    parts.append(x)
    if after:
        parts.append(_zeros_like_axis(xp, x, axis, after))
    return x if len(parts) == 1 else xp.concat(parts, axis=axis)


def im2col(xp, x, kernel, stride, padding=(0, 0)) -> Any:
    """The windows of ``x``, one strided slice per kernel offset.

    x : (N, C, H, W); kernel, stride, padding : (kh, kw), (sh, sw), (ph, pw)
    -> (N, C, kh·kw, H_out, W_out), entry ``[n, c, i·kw + j, p, q]`` the zero-padded input at
    ``[n, c, i + sh·p, j + sw·q]``. :func:`conv_cols` permutes it to the im2col matrix.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp_ = pad_axis(xp, pad_axis(xp, x, 2, ph, ph), 3, pw, pw)
    h_out = conv_output_size(x.shape[2], kh, sh, ph)
    w_out = conv_output_size(x.shape[3], kw, sw, pw)
    # The slice for offset (i, j) starts there and takes every stride-th row and column.
    slices = [
        xp_[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    return xp.stack(slices, axis=2)


def _dilate(xp, g, axis: int, step: int) -> Any:
    """``g`` with ``step − 1`` zeros after each entry along ``axis`` (the last ones dropped):
    length n -> step·(n − 1) + 1. Interleaves by stacking with zeros and reshaping."""
    if step == 1:
        return g
    n = g.shape[axis]
    zeros = xp.zeros_like(g)
    woven = xp.stack([g] + [zeros] * (step - 1), axis=axis + 1)
    shape = (*g.shape[:axis], n * step, *g.shape[axis + 1 :])
    woven = xp.reshape(woven, shape)
    index = (slice(None),) * axis + (slice(0, step * (n - 1) + 1), Ellipsis)
    return woven[index]


def col2im(xp, patches, input_shape, kernel, stride, padding=(0, 0)) -> Any:
    """The adjoint of :func:`im2col`: scatter-add every window back onto the input.

    patches : (N, C, kh·kw, H_out, W_out), gradients of :func:`im2col`'s output;
    input_shape : (N, C, H, W) -> (N, C, H, W): Σ over kernel offsets of each offset's slice
    placed where :func:`im2col` read it (a zero-padded placement per offset, summed), with the
    padding cut off.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    _, _, h, w = input_shape
    hp, wp = h + 2 * ph, w + 2 * pw
    # Spread each output position to its stride-th place once, for every offset together.
    spread = _dilate(xp, _dilate(xp, patches, 3, sh), 4, sw)
    rows, cols = spread.shape[3], spread.shape[4]
    total = None
    for i in range(kh):
        for j in range(kw):
            g = spread[:, :, i * kw + j, ...]
            g = pad_axis(xp, pad_axis(xp, g, 2, i, hp - i - rows), 3, j, wp - j - cols)
            total = g if total is None else total + g  # eq. 33
    return total[:, :, ph : ph + h, pw : pw + w]  # eq. 33


def conv_cols(xp, x, kernel, stride, padding) -> Any:
    """The im2col matrix of x (N, C, H, W): (N·H_out·W_out, C·kh·kw), rows (n, p, q) and
    columns (c, i, j), the order of a (O, C, kh, kw) weight's axes (eq. 29)."""
    windows = im2col(xp, x, kernel, stride, padding)
    c, k = windows.shape[1], windows.shape[2]
    return xp.reshape(xp.permute_dims(windows, (0, 3, 4, 1, 2)), (-1, c * k))  # eq. 29


def conv_col2im(xp, grad_cols, input_shape, kernel, stride, padding) -> Any:
    """∂C/∂X (N, C, H, W) from ∂C/∂cols (N·H_out·W_out, C·kh·kw): the adjoint of
    :func:`conv_cols` (eq. 33)."""
    n, c, h, w = input_shape
    h_out = conv_output_size(h, kernel[0], stride[0], padding[0])
    w_out = conv_output_size(w, kernel[1], stride[1], padding[1])
    patches = xp.reshape(grad_cols, (n, h_out, w_out, c, kernel[0] * kernel[1]))
    patches = xp.permute_dims(patches, (0, 3, 4, 1, 2))
    return col2im(xp, patches, input_shape, kernel, stride, padding)  # eq. 33


def max_pool(xp, x, kernel, stride) -> tuple[Any, Any]:
    """(Y, A) of max pooling x (N, C, H, W): Y the maximum of each window (N, C, H_out, W_out),
    A its position within the window, ``i·kw + j``, the first in row-major order on ties
    (eq. 34)."""
    windows = im2col(xp, x, kernel, stride)
    return xp.max(windows, axis=2), xp.argmax(windows, axis=2)  # eq. 34


def max_pool_grad(xp, grad, arg, input_shape, kernel, stride) -> Any:
    """∂C/∂X (N, C, H, W): each window's gradient ``grad`` (N, C, H_out, W_out) routed to its
    argmax ``arg`` (from :func:`max_pool`), overlapping windows adding up (eq. 35)."""
    k = kernel[0] * kernel[1]
    offsets = xp.reshape(xp.arange(k, device=grad.device), (1, 1, k, 1, 1))
    # One-hot of the argmax along the window axis, by comparison (no mask assignment).
    one_hot = xp.astype(xp.expand_dims(arg, axis=2) == offsets, grad.dtype)
    patches = one_hot * xp.expand_dims(grad, axis=2)  # eq. 35
    return col2im(xp, patches, input_shape, kernel, stride)  # eq. 35


def avg_pool(xp, x, kernel, stride) -> Any:
    """The mean of each window of x (N, C, H, W) -> (N, C, H_out, W_out) (eq. 36)."""
    return xp.mean(im2col(xp, x, kernel, stride), axis=2)  # eq. 36


def avg_pool_grad(xp, grad, input_shape, kernel, stride) -> Any:
    """∂C/∂X (N, C, H, W): each window's gradient shared equally by its kh·kw entries (eq. 36)."""
    k = kernel[0] * kernel[1]
    share = xp.expand_dims(grad / k, axis=2)
    patches = xp.broadcast_to(share, (*share.shape[:2], k, *share.shape[3:]))  # eq. 36
    return col2im(xp, patches, input_shape, kernel, stride)  # eq. 36
