"""``Standardize``: fixed input preprocessing, y = (x − mean) / scale, kept inside the model.

A model whose first layer is a ``Standardize`` takes raw input: the statistics of the training
data travel with it in every checkpoint (as :class:`~arrayprop.nn.Buffer` s, never trained), so
``load_checkpoint(path).model.predict(raw)`` needs no preprocessing by hand. ``arrayprop train``
puts one in front of every model it builds. Array API only, through ``backend.xp``; equation
numbers refer to docs/math.md.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

from arrayprop.backends import Backend, get_backend
from arrayprop.errors import NonFiniteError, ShapeError
from arrayprop.nn.layer import Layer, check_grad, check_input, config_dims
from arrayprop.nn.parameter import Buffer
from arrayprop.nn.registry import register_layer
from arrayprop.validation import POSITIVE_INT, check

__all__ = ["Standardize"]


@register_layer
class Standardize(Layer):
    """Subtract a fixed ``mean`` and divide by a fixed ``scale``: y = (x − μ) / s (eq. 42).

    Nothing here is trained: μ and s are buffers, saved in checkpoints, moved by ``.to()`` and
    cast to the model's dtype like its weights. The backward pass returns ∂C/∂x = ∂C/∂y / s.

    Parameters
    ----------
    shape : int or tuple of int
        One sample's shape, e.g. ``64`` for rows of 64 features or ``(1, 28, 28)`` for images.
        The input is ``(batch, ..., *shape)``: for a 1-D ``shape`` every position of
        ``(batch, positions, features)`` is standardised alike, as a Dense reads it.
    mean : array-like, optional
        μ, of ``shape`` or broadcastable to it (a scalar: one mean for everything); default 0.
        Must be finite.
    scale : array-like, optional
        s, of ``shape`` or broadcastable to it (a scalar: one overall standard deviation);
        default 1. Must be finite and > 0.
    backend, dtype : optional
        Where the buffers live (default: the default backend, float32); a :class:`Sequential`
        moves them to its own.

    Attributes
    ----------
    mean, scale : Buffer
        μ and s, broadcast to ``shape``.
    """

    preserves_shape: ClassVar[bool] = True

    def __init__(
        self,
        shape: int | tuple[int, ...] | list[int],
        mean: Any = None,
        scale: Any = None,
        *,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        dims = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        if not dims:
            raise ValueError("Standardize: shape must have at least one axis, got ()")
        self.shape = tuple(check("Standardize", "shape", n, POSITIVE_INT) for n in dims)
        self.backend = be = get_backend(backend, dtype=dtype)
        self.mean = Buffer(self._fixed(mean, 0.0, "mean"), "mean")
        self.scale = Buffer(self._fixed(scale, 1.0, "scale"), "scale")
        xp = be.xp
        if not bool(xp.all(xp.isfinite(self.mean.data))):
            raise NonFiniteError("Standardize: mean must be finite, got NaN or infinity")
        s = self.scale.data
        if not bool(xp.all(xp.isfinite(s))) or not bool(xp.all(s > 0)):
            raise ValueError(
                f"Standardize: scale must be finite and > 0, got min {float(xp.min(s))}"
            )
        self._cache: tuple[tuple[int, ...], Any] | None = None

    def _fixed(self, value: Any, default: float, what: str) -> Any:
        """``value`` (or ``default``) on the backend in its dtype, broadcast to :attr:`shape`
        and owned by the layer."""
        be = self.backend
        xp = be.xp
        if value is None:
            return xp.full(self.shape, default, dtype=be.dtype, device=be.device)
        arr = be.asarray(value, dtype=be.dtype, what=f"Standardize: {what}")
        try:
            arr = xp.broadcast_to(arr, self.shape)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ShapeError(
                f"Standardize: {what} of shape {tuple(arr.shape)} does not broadcast to the "
                f"sample shape {self.shape}"
            ) from exc
        return xp.asarray(arr, copy=True)

    def __repr__(self) -> str:
        inner = self.shape[0] if len(self.shape) == 1 else self.shape
        return f"Standardize({inner})"

    @property
    def in_features(self) -> int | None:
        """The feature width a 1-D ``shape`` declares (None for images)."""
        return self.shape[0] if len(self.shape) == 1 else None

    @property
    def out_features(self) -> int | None:
        return self.in_features

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        shape = config_dims(config, "shape")
        return {"mean": shape, "scale": shape}

    def config(self) -> dict[str, Any]:
        # The values are buffers, stored with the weights; the config only sizes them.
        return {"shape": list(self.shape)}

    def forward(self, x: Any) -> Any:
        """x : (batch, ..., *shape) -> (x − μ) / s, the same shape (eq. 42)."""
        check_input(self, x)
        got = tuple(x.shape)
        k = len(self.shape)
        if len(got) <= k or got[-k:] != self.shape:
            want = ", ".join(map(str, self.shape))
            raise ShapeError(f"{self!r}: expected input of shape (batch, ..., {want}), got {got}")
        self._cache = (got, x.dtype)
        return (x - self.mean.data) / self.scale.data  # eq. 42

    def backward(self, grad: Any) -> Any:
        """grad : ∂C/∂y -> ∂C/∂x = ∂C/∂y / s (eq. 43)."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        shape, dtype = self._cache
        check_grad(self, grad, dtype)
        if tuple(grad.shape) != shape:
            raise ShapeError(
                f"{self!r}: expected a gradient of shape {shape}, got {tuple(grad.shape)}"
            )
        self._cache = None
        return grad / self.scale.data  # eq. 43

    def clear_cache(self) -> None:
        self._cache = None
