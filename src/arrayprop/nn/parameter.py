"""``Parameter``: a trainable array and its gradient, what optimizers update."""

from __future__ import annotations

from typing import Any

__all__ = ["Parameter"]


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : array
        The current value, on the owning layer's backend.
    grad : array or None
        ∂C/∂data from the last ``backward``, same shape and dtype as ``data``.
    name : str
        A dotted name such as ``"0.weight"`` (set by :class:`~arrayprop.nn.Sequential`).
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.grad = None
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.shape})"
