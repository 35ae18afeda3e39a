"""Hand-written NumPy matrix backprop: the overhead floor for the benchmarks.

This is a *reference*, not a product: the plainest loop that does one full
training step (forward, loss, backward, SGD update) of an MLP with ReLU hidden
layers and a linear output layer, in matrix form, on host NumPy arrays. It ships in
the package so that an installed ``arrayprop bench`` times it too.

Notation (row-major batches, one sample per row)::

    Z^l = A^{l-1} W^l + b^l                     A^0 = X
    A^l = relu(Z^l)                              (hidden layers)
    softmax-CE:  δ^L = (softmax(Z^L) - Y) / N    (fused gradient, Y one-hot)
    MSE:         δ^L = 2 (Z^L - Y) / (N K)       (mean over all N*K elements,
                                                  like torch.nn.functional.mse_loss)
    δ^l = (δ^{l+1} W^{l+1 T}) ⊙ relu'(Z^l)
    ∂W^l = A^{l-1 T} δ^l,   ∂b^l = Σ_rows δ^l
    W^l -= η ∂W^l,          b^l -= η ∂b^l

Weights are stored ``(n_in, n_out)`` so that the forward product is ``A @ W``.
Everything stays in the dtype of the parameters (float32 for the benchmarks):
the learning rate is a Python float and the 1/N scale an int, which NumPy >= 2
(NEP 50) never uses to promote a float32 array to float64.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

LOSSES = ("softmax-ce", "mse")


def init_params(sizes, seed=0, dtype=np.float32):
    """He-normal weights ``(n_in, n_out)`` and zero biases, from a seeded Generator."""
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in pairwise(sizes):
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        params.append((w.astype(dtype), np.zeros(n_out, dtype=dtype)))
    return params


def forward(params, x):
    """Return ``[A^0=X, A^1, ..., A^{L-1}, Z^L]``: ReLU hidden activations, then logits.

    relu'(Z^l) is recovered in the backward pass as ``A^l > 0``, so the hidden
    pre-activations need not be kept.
    """
    acts = [x]
    last = len(params) - 1
    for i, (w, b) in enumerate(params):
        z = acts[-1] @ w
        z += b
        acts.append(np.maximum(z, 0, out=z) if i < last else z)
    return acts


def loss_and_delta(logits, y, loss):
    """Loss value (0-d array, parameter dtype) and δ^L = ∂loss/∂Z^L."""
    n = logits.shape[0]
    if loss == "softmax-ce":
        # y: integer class labels, shape (N,)
        m = logits.max(axis=1, keepdims=True)
        e = np.exp(logits - m)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        value = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, y])
        delta = e / s
        delta[rows, y] -= 1
        delta /= n
        return value, delta
    if loss == "mse":
        # y: targets, same shape as the output
        diff = logits - y
        value = np.mean(diff * diff)
        delta = diff * (2.0 / diff.size)
        return value, delta
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def gradients(params, x, y, loss="softmax-ce"):
    """Loss and ``[(∂W, ∂b), ...]`` for every layer, without updating anything."""
    acts = forward(params, x)
    value, delta = loss_and_delta(acts[-1], y, loss)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = (acts[i].T @ delta, delta.sum(axis=0))
        if i > 0:
            delta = delta @ params[i][0].T
            delta *= acts[i] > 0
    return value, grads


def train_step(params, x, y, lr=0.01, loss="softmax-ce"):
    """One full SGD step, in place on ``params``; returns the loss before the update.

    Each layer's update is applied right after its gradient is formed and after the
    δ for the layer below has been computed with the *old* weights.
    """
    acts = forward(params, x)
    value, delta = loss_and_delta(acts[-1], y, loss)
    for i in range(len(params) - 1, -1, -1):
        w, b = params[i]
        dw = acts[i].T @ delta
        db = delta.sum(axis=0)
        if i > 0:
            delta = delta @ w.T
            delta *= acts[i] > 0
        w -= lr * dw
        b -= lr * db
    return value


class NumpyReferenceMLP:
    """The reference loop bundled with its parameters (what the benchmarks time)."""

    def __init__(self, params, lr=0.01, loss="softmax-ce"):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        self.params = [(np.array(w), np.array(b)) for w, b in params]
        self.lr = lr
        self.loss = loss

    def step(self, x, y):
        return train_step(self.params, x, y, self.lr, self.loss)

    def loss_value(self, x, y):
        return loss_and_delta(forward(self.params, x)[-1], y, self.loss)[0]
