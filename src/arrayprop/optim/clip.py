"""Gradient clipping by global norm: :func:`global_grad_norm` and :func:`clip_grad_norm`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arrayprop.backends import backend_of
from arrayprop.nn.parameter import Parameter
from arrayprop.validation import POSITIVE, check

__all__ = ["MAX_NORM", "clip_grad_norm", "global_grad_norm"]

#: What ``max_norm`` may be.
MAX_NORM = POSITIVE


def global_grad_norm(params: Iterable[Parameter]) -> Any:
    """‖g‖₂ of all gradients taken as one vector: √(Σ_p Σ_i g_{p,i}²).

    Parameters without a gradient are skipped. Returns a 0-d array on the parameters' backend
    (in the dtype of the gradients), with no device→host copy.
    """
    params = list(params)
    if not params:
        raise ValueError("global_grad_norm: got an empty parameter list")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        data = params[0].data
        return backend_of(data, dtype=data.dtype).scalar(0.0, dtype=data.dtype)
    xp = backend_of(grads[0], dtype=grads[0].dtype).xp
    # asarray: NumPy reductions return scalars, and callers expect a 0-d array.
    return xp.asarray(xp.sqrt(sum(xp.sum(g * g) for g in grads)))


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> Any:
    """Scale all gradients together so that their global norm is at most ``max_norm``.

    As PyTorch's ``nn.utils.clip_grad_norm_``: with N = :func:`global_grad_norm`,
    g ← g · min(1, max_norm / (N + 10⁻⁶)). The factor stays on the device (no host sync, no
    branch on its value) and each ``Parameter.grad`` is replaced by a new array, not changed in
    place.

    Returns
    -------
    array, shape ()
        N, the norm before clipping.
    """
    max_norm = check("clip_grad_norm", "max_norm", max_norm, MAX_NORM)
    params = list(params)
    total = global_grad_norm(params)
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return total
    be = backend_of(grads[0].grad, dtype=total.dtype)
    scale = be.xp.minimum(max_norm / (total + 1e-6), be.scalar(1.0, dtype=total.dtype))
    for p in grads:
        p.grad = p.grad * scale
    return total
