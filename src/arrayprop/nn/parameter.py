"""``Parameter`` (a trainable array and its gradient) and ``Buffer`` (non-trainable state).

A layer holds them as attributes; :meth:`~arrayprop.nn.Layer.named_parameters` and
:meth:`~arrayprop.nn.Layer.named_buffers` find them by walking the attributes, and checkpoints,
``state_dict()`` and ``.to()`` carry both. See docs/layers.md.
"""

from __future__ import annotations

from typing import Any

from arrayprop import kernels

__all__ = ["Buffer", "Parameter"]


class Parameter:
    """A trainable array and its gradient.

    A layer may leave the weight gradient of a product ``Z = X W`` unformed: it hands the two
    factors to :meth:`set_grad_factors` and ``grad`` computes ∂C/∂W = Xᵀδ (eq. 5 of
    docs/math.md) the first time it is read. An optimizer that can fold the product into its
    update reads :attr:`grad_factors` instead and never forms it (plain SGD on NumPy: one GEMM
    with β = 1, eq. 7a).

    Attributes
    ----------
    data : array
        The current value, on the owning layer's backend.
    grad : array or None
        ∂C/∂data from the last ``backward``, same shape and dtype as ``data``.
    name : str
        The dotted path of the attribute holding it, such as ``"0.weight"`` (set when a model
        is walked by :meth:`~arrayprop.nn.Layer.named_parameters`).
    """

    __slots__ = ("_factors", "_grad", "data", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self._grad = None
        self._factors = None
        self.name = name

    @property
    def grad(self) -> Any:
        if self._grad is None and self._factors is not None:
            backend, x, delta = self._factors
            self._grad = kernels.matmul(backend, x.T, delta)  # eq. 5
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = value
        self._factors = None

    @property
    def grad_factors(self) -> tuple[Any, Any, Any] | None:
        """``(backend, x, delta)`` while the gradient is the unformed product xᵀ·delta, else
        None."""
        return self._factors if self._grad is None else None

    def set_grad_factors(self, backend: Any, x: Any, delta: Any) -> None:
        """Set the gradient to xᵀ·delta without forming it (x: (rows, in), delta: (rows, out))."""
        self._grad = None
        self._factors = (backend, x, delta)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.shape})"


class Buffer:
    """A non-trainable array a layer keeps as state (running statistics, a fixed table).

    Optimizers never see it; checkpoints, ``state_dict()`` and ``.to()`` carry it like a
    :class:`Parameter`.

    Attributes
    ----------
    data : array
        The current value, on the owning layer's backend.
    name : str
        The dotted path of the attribute holding it (set when a model is walked).
    """

    __slots__ = ("data", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __repr__(self) -> str:
        return f"Buffer({self.name or '?'}, shape={self.shape})"
