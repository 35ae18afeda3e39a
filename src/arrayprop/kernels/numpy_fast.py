"""NumPy fast paths: the portable primitives rewritten with in-place ufuncs.

Each function matches :mod:`arrayprop.kernels.portable` (tested in tests/test_kernels.py) but
may reuse the buffer it is allowed to own (``inplace=True``), which saves an allocation and a
pass over memory per call. Only the backend layer dispatches here.
"""

from __future__ import annotations

import numpy as np

from . import portable


def linear(x, w, b):
    z = np.matmul(x, w)
    z += b
    return z


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


def sgd_update(w, g, lr):
    w -= np.multiply(g, lr, dtype=w.dtype)
    return w
