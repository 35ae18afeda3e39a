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
