"""``Flatten``: (batch, d1, d2, ...) -> (batch, d1·d2·...), and back in the backward pass."""

from __future__ import annotations

import math
from typing import Any

from arrayprop.errors import ShapeError
from arrayprop.nn.layer import Layer, check_grad
from arrayprop.nn.registry import register_layer

__all__ = ["Flatten"]


@register_layer
class Flatten(Layer):
    """Flatten every axis after the first: (batch, ...) -> (batch, features).

    Reshapes only (no copy where the library can avoid one); ``backward`` restores the input's
    shape.
    """

    def __init__(self) -> None:
        self._shape: tuple[int, ...] | None = None
        self._dtype = None

    def __repr__(self) -> str:
        return "Flatten()"

    def forward(self, x: Any) -> Any:
        """x : (batch, ...) -> (batch, prod(...))."""
        be = self.backend_for(x)
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) < 1:
            raise ShapeError(f"Flatten(): expected input of shape (batch, ...), got {shape}")
        self._shape, self._dtype = shape, x.dtype
        return be.xp.reshape(x, (shape[0], math.prod(shape[1:])))

    def backward(self, grad: Any) -> Any:
        """grad : (batch, prod(...)) -> (batch, ...), the input's shape."""
        shape = self._shape
        if shape is None:
            raise RuntimeError("Flatten(): backward called before forward")
        check_grad(self, grad, self._dtype)
        want = (shape[0], math.prod(shape[1:]))
        if tuple(grad.shape) != want:
            raise ShapeError(
                f"Flatten(): expected a gradient of shape {want}, got {tuple(grad.shape)}"
            )
        self._shape = self._dtype = None
        return self.backend.xp.reshape(grad, shape)

    def clear_cache(self) -> None:
        self._shape = self._dtype = None
