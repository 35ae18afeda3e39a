"""``Dropout``: inverted dropout, with masks from the per-step random stream (eq. 23).

The mask is drawn on the host from :meth:`Layer.step_rng` and moved to the device, so one seed
gives the same masks on every backend and a resumed run continues them exactly.
"""

from __future__ import annotations

from typing import Any

from arrayprop.errors import ShapeError
from arrayprop.nn.layer import Layer, check_grad, check_last_axis
from arrayprop.nn.registry import register_layer
from arrayprop.validation import Interval, check

__all__ = ["DROPOUT_P", "Dropout"]

#: What Dropout's drop probability may be: 0 (the identity) up to, not including, 1.
DROPOUT_P = Interval(float, 0, 1, closed="left")

#: What ``backward`` multiplies by when ``forward`` passed its input through (eval mode, p = 0).
_PASSED = "passed"


@register_layer
class Dropout(Layer):
    """Inverted dropout: in training mode each element is zeroed with probability ``p`` and the
    kept ones are scaled by 1/(1 − p), so the expected output is the input; in evaluation mode
    (and for ``p = 0``) the identity.

    Y = X ⊙ M, M_i = [U_i ≥ p] / (1 − p) with U_i uniform on [0, 1); ∂C/∂X = ∂C/∂Y ⊙ M (eq. 23).

    Parameters
    ----------
    p : float
        The probability of dropping an element, 0 ≤ p < 1.
    """

    preserves_shape = True

    def __init__(self, p: float = 0.5) -> None:
        self.p = check("Dropout", "p", p, DROPOUT_P)
        self._mask: Any = None
        self._dtype: Any = None
        self._shape: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def clear_cache(self) -> None:
        self._mask = self._dtype = self._shape = None

    def forward(self, x: Any) -> Any:
        """x : (batch, ...) -> x ⊙ M in training mode, x in evaluation mode; the same shape."""
        be = self.backend_for(x)
        check_last_axis(self, x, None, "input")
        self._dtype, self._shape = x.dtype, tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._mask = _PASSED
            return x
        # Drawn on the host: the same numbers on every backend for one (seed, step, path).
        u = self.step_rng().random(self._shape)
        keep = (u >= self.p).astype(u.dtype) * (1.0 / (1.0 - self.p))
        self._mask = be.asarray(keep, dtype=x.dtype, check_range=False)
        return x * self._mask  # eq. 23

    def backward(self, grad: Any) -> Any:
        """∂C/∂Y (the input's shape) -> ∂C/∂X = ∂C/∂Y ⊙ M (the same mask)."""
        mask = self._mask
        if mask is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        check_grad(self, grad, self._dtype)
        if tuple(grad.shape) != self._shape:
            raise ShapeError(
                f"{self!r}: gradient of shape {tuple(grad.shape)} does not match the output "
                f"shape {self._shape}"
            )
        self.clear_cache()
        if isinstance(mask, str):
            return grad
        return grad * mask  # eq. 23
