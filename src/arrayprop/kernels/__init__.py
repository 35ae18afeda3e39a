"""Hot-path primitives behind one name each, with per-backend fast paths.

Layers and optimizers call these functions with their :class:`~arrayprop.backend.Backend`;
this module picks the implementation. :mod:`.portable` holds the Array API reference version of
every primitive; a backend listed in ``_FAST`` gets an optimised one (NumPy: in-place ufuncs).
Fast paths may overwrite an argument only when the caller passes ``inplace=True``, i.e. when it
owns that buffer; the portable versions never do.

``ARRAYPROP_KERNELS=portable`` (or :func:`use_portable`) turns the fast paths off, which is how
the tests compare the two.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from . import portable
from .portable import ACTIVATIONS

__all__ = [
    "ACTIVATIONS",
    "activation",
    "activation_grad",
    "linear",
    "nonfinite_quiet",
    "portable",
    "sgd_update",
    "softmax",
    "use_portable",
]

_state = {"portable": os.environ.get("ARRAYPROP_KERNELS", "").lower() == "portable"}


def _fast(backend):
    if _state["portable"]:
        return None
    if backend.name == "numpy":
        from . import numpy_fast

        return numpy_fast
    return None


@contextmanager
def use_portable(enabled: bool = True):
    """Within the block, every primitive runs its portable Array API version."""
    previous = _state["portable"]
    _state["portable"] = enabled
    try:
        yield
    finally:
        _state["portable"] = previous


@contextmanager
def nonfinite_quiet(backend):
    """Within the block, overflow / invalid-value warnings of NumPy arithmetic are off.

    NumPy (and array_api_strict, built on it) warn when a value overflows to inf or becomes NaN;
    ``fit`` checks for non-finite numbers itself and raises DivergenceError, which under
    ``-W error`` such a warning, raised mid-step, would pre-empt.
    """
    if backend.name in ("numpy", "array_api_strict"):
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            yield
    else:
        yield


def linear(backend, x, w, b):
    """Z = X W + b. x (batch, in), w (in, out), b (out,) -> (batch, out), a new array."""
    fast = _fast(backend)
    return fast.linear(x, w, b) if fast else portable.linear(backend.xp, x, w, b)


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


def sgd_update(backend, w, g, lr):
    """W ← W − η G. Returns the updated weights (the same buffer on mutable backends)."""
    fast = _fast(backend)
    return fast.sgd_update(w, g, lr) if fast else portable.sgd_update(backend.xp, w, g, lr)
