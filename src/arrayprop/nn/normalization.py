"""Normalisation layers: ``BatchNorm1d``, ``BatchNorm2d`` and ``LayerNorm``, with their
matrix-form backward passes.

PyTorch's conventions (eps 1e-5, momentum 0.1, biased variance to normalise, unbiased variance
in the running estimate), so weights, buffers and outputs can be exchanged with
PyTorch's ``BatchNorm1d``/``BatchNorm2d`` / ``LayerNorm``. Array API only, through ``backend.xp``:
running statistics are replaced by new arrays, never written in place. Equation numbers refer to
docs/math.md.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

from arrayprop.backends import Backend, get_backend
from arrayprop.errors import ShapeError
from arrayprop.nn.layer import Layer, check_grad, check_input, config_dims, exact_array
from arrayprop.nn.parameter import Buffer, Parameter
from arrayprop.nn.registry import register_layer
from arrayprop.validation import POSITIVE, POSITIVE_INT, Interval, check

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]

#: What ``momentum`` may be: the weight of the new batch in the running statistics.
MOMENTUM = Interval(float, 0, 1)


class _Affine(Layer):
    """Shared by the three layers: the optional weight (γ, ones) and bias (β, zeros) of
    ``shape``, exact values checked like :class:`~arrayprop.nn.Dense`'s, and the input check."""

    preserves_shape: ClassVar[bool] = True

    def _take_cache(self, grad: Any) -> tuple[Any, ...]:
        """What forward kept (x̂ first), checked against ∂C/∂y (backward after forward, the same
        backend, dtype and shape) and released: one backward per forward."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        x_hat = self._cache[0]
        check_grad(self, grad, x_hat.dtype)
        if tuple(grad.shape) != tuple(x_hat.shape):
            raise ShapeError(
                f"{self!r}: expected a gradient of shape {tuple(x_hat.shape)}, got "
                f"{tuple(grad.shape)}"
            )
        cache, self._cache = self._cache, None
        return cache

    def _make_affine(self, affine: bool, weight: Any, bias: Any, shape: tuple[int, ...]) -> None:
        be = self.backend
        if not affine:
            if weight is not None or bias is not None:
                raise ValueError(f"{self!r}: weight= and bias= need the affine transform")
            self.weight = self.bias = None
            return
        ones = be.xp.ones(shape, dtype=be.dtype, device=be.device)
        w = ones if weight is None else exact_array(self, weight, shape, "weight")
        b = be.zeros(shape) if bias is None else exact_array(self, bias, shape, "bias")
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(b, "bias")

    def _check_input(self, x: Any) -> None:
        check_input(self, x)


class _BatchNorm(_Affine):
    """Batch normalisation over every axis but the channel axis 1 (eqs. 24–20)."""

    #: The input ranks the layer accepts, and how to write them in a message.
    ranks: ClassVar[tuple[int, ...]] = ()
    layout: ClassVar[str] = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        *,
        weight: Any = None,
        bias: Any = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        name = type(self).__name__
        self.num_features = check(name, "num_features", num_features, POSITIVE_INT)
        self.eps = check(name, "eps", eps, POSITIVE)
        self.momentum = check(name, "momentum", momentum, MOMENTUM)
        self.affine = bool(affine)
        self.backend = be = get_backend(backend, dtype=dtype)
        c = (self.num_features,)
        self._make_affine(self.affine, weight, bias, c)
        self.running_mean = Buffer(be.zeros(c), "running_mean")
        self.running_var = Buffer(be.xp.ones(c, dtype=be.dtype, device=be.device), "running_var")
        self._cache = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_features})"

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        c = config_dims(config, "num_features")
        shapes = {"running_mean": c, "running_var": c}
        if config.get("affine", True):
            shapes.update(weight=c, bias=c)
        return shapes

    def config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
        }

    def _channels(self, a: Any, rank: int) -> Any:
        """A per-channel vector (C,) shaped to broadcast against input of ``rank`` axes:
        (1, C, 1, ...)."""
        return self.backend.xp.reshape(a, (1, self.num_features) + (1,) * (rank - 2))

    def forward(self, x: Any) -> Any:
        """Y = γ x̂ + β with x̂ = (x − μ) / √(σ² + ε) per channel.  x : (N, C, ...) -> same.

        Training: μ, σ² are the batch's (biased variance), and the running statistics move
        towards the batch's mean and unbiased variance. Evaluation: the running statistics.
        """
        self._check_input(x)
        shape = tuple(x.shape)
        if len(shape) not in self.ranks or shape[1] != self.num_features:
            raise ShapeError(
                f"{self!r}: expected input of shape {self.layout.format(self.num_features)}, "
                f"got {shape}"
            )
        xp = self.backend.xp
        rank = len(shape)
        axes = (0, *range(2, rank))
        m = math.prod(shape[i] for i in axes)  # values per channel
        if self.training:
            if m < 2:
                raise ShapeError(
                    f"{self!r}: expected more than 1 value per channel in training mode, got "
                    f"input of shape {shape}; use a batch of at least 2 (or eval mode)"
                )
            mu = xp.mean(x, axis=axes, keepdims=True)  # eq. 24
            xc = x - mu
            var = xp.mean(xc * xc, axis=axes, keepdims=True)  # eq. 24
            inv_std = 1.0 / xp.sqrt(var + self.eps)
            x_hat = xc * inv_std  # eq. 24
            # New arrays, not in-place updates: JAX arrays are immutable.
            a = self.momentum
            rm, rv = self.running_mean, self.running_var
            rm.data = (1 - a) * rm.data + a * xp.reshape(mu, (-1,))  # eq. 25
            rv.data = (1 - a) * rv.data + a * (m / (m - 1)) * xp.reshape(var, (-1,))  # eq. 25
        else:
            inv_std = 1.0 / xp.sqrt(self._channels(self.running_var.data, rank) + self.eps)
            x_hat = (x - self._channels(self.running_mean.data, rank)) * inv_std  # eq. 24
        self._cache = (x_hat, inv_std, self.training, m)
        if not self.affine:
            return x_hat
        w, b = self.weight.data, self.bias.data
        return self._channels(w, rank) * x_hat + self._channels(b, rank)  # eq. 24

    def backward(self, grad: Any) -> Any:
        """Given G = ∂C/∂Y (N, C, ...): sets ∂C/∂γ = Σ G ⊙ x̂ and ∂C/∂β = Σ G over every axis
        but the channel axis; returns ∂C/∂x (eq. 26 in training mode, G γ / σ in eval mode)."""
        x_hat, inv_std, training, m = self._take_cache(grad)
        xp = self.backend.xp
        axes = (0, *range(2, len(x_hat.shape)))
        sum_g = xp.sum(grad, axis=axes, keepdims=True)
        sum_g_xhat = xp.sum(grad * x_hat, axis=axes, keepdims=True)
        scale = inv_std
        if self.affine:
            self.weight.grad = xp.reshape(sum_g_xhat, (-1,))  # eq. 26
            self.bias.grad = xp.reshape(sum_g, (-1,))  # eq. 26
            scale = self._channels(self.weight.data, len(x_hat.shape)) * inv_std
        if not training:  # μ and σ are constants: the layer is affine in x
            return grad * scale
        return (scale / m) * (m * grad - sum_g - x_hat * sum_g_xhat)  # eq. 26

    def clear_cache(self) -> None:
        self._cache = None


@register_layer
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) (or (N, C, L)) input, per feature C.

    Parameters
    ----------
    num_features : int
        C, the number of features (channels).
    eps : float
        Added to the variance before the square root (default 1e-5).
    momentum : float
        Weight of the batch in the running statistics, in [0, 1] (default 0.1):
        running = (1 − momentum) · running + momentum · batch.
    affine : bool
        Whether to learn the per-feature scale γ (``weight``) and shift β (``bias``).
    weight, bias : array-like, shape (C,), optional
        Exact initial γ and β (default ones and zeros).
    backend : str or Backend, optional
        Where the parameters and buffers live (default: :func:`~arrayprop.get_backend`).
    dtype : str, optional
        Overrides the backend's float dtype.

    Attributes
    ----------
    weight, bias : Parameter, shape (C,), or None without ``affine``
    running_mean : Buffer, shape (C,)
        Starts at 0; the batches' means.
    running_var : Buffer, shape (C,)
        Starts at 1; the batches' unbiased variances.
    """

    ranks = (2, 3)
    layout = "(N, {0}) or (N, {0}, L)"


@register_layer
class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input, per channel C (statistics over N, H, W).

    Parameters, attributes: as :class:`BatchNorm1d`.
    """

    ranks = (4,)
    layout = "(N, {0}, H, W)"


@register_layer
class LayerNorm(_Affine):
    """Layer normalisation over the trailing ``normalized_shape`` axes of each sample
    (eqs. 27–22).

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The shape of the trailing axes normalised together: input (..., *normalized_shape).
    eps : float
        Added to the variance before the square root (default 1e-5).
    elementwise_affine : bool
        Whether to learn the elementwise scale γ (``weight``) and shift β (``bias``).
    weight, bias : array-like, shape normalized_shape, optional
        Exact initial γ and β (default ones and zeros).
    backend : str or Backend, optional
        Where the parameters live (default: :func:`~arrayprop.get_backend`).
    dtype : str, optional
        Overrides the backend's float dtype.

    Attributes
    ----------
    weight, bias : Parameter, shape normalized_shape, or None without ``elementwise_affine``
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        *,
        weight: Any = None,
        bias: Any = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        dims = (
            (normalized_shape,)
            if isinstance(normalized_shape, numbers.Integral)
            else normalized_shape
        )
        try:
            dims = tuple(dims)
        except TypeError:
            dims = ()
        if not dims:
            raise ValueError(
                "LayerNorm: normalized_shape must be an int >= 1 or a non-empty tuple of them, "
                f"got {normalized_shape!r}"
            )
        self.normalized_shape = tuple(
            check("LayerNorm", "normalized_shape", d, POSITIVE_INT) for d in dims
        )
        self.eps = check("LayerNorm", "eps", eps, POSITIVE)
        self.elementwise_affine = bool(elementwise_affine)
        self.backend = get_backend(backend, dtype=dtype)
        self._make_affine(self.elementwise_affine, weight, bias, self.normalized_shape)
        self._cache = None

    def __repr__(self) -> str:
        dims = self.normalized_shape
        return f"LayerNorm({dims[0] if len(dims) == 1 else dims})"

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        shape = config_dims(config, "normalized_shape")
        return {"weight": shape, "bias": shape} if config.get("elementwise_affine", True) else {}

    def config(self) -> dict[str, Any]:
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
        }

    def forward(self, x: Any) -> Any:
        """Y = γ ⊙ x̂ + β, x̂ = (x − μ) / √(σ² + ε) with μ, σ² (biased) over the trailing axes of
        each sample, in training and evaluation alike.  x : (batch, ..., *normalized_shape)."""
        self._check_input(x)
        shape, k = tuple(x.shape), len(self.normalized_shape)
        if len(shape) < k + 1 or shape[-k:] != self.normalized_shape:
            dims = ", ".join(str(d) for d in self.normalized_shape)
            raise ShapeError(f"{self!r}: expected input of shape (batch, ..., {dims}), got {shape}")
        xp = self.backend.xp
        axes = tuple(range(len(shape) - k, len(shape)))
        mu = xp.mean(x, axis=axes, keepdims=True)  # eq. 27
        xc = x - mu
        var = xp.mean(xc * xc, axis=axes, keepdims=True)  # eq. 27
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        x_hat = xc * inv_std  # eq. 27
        self._cache = (x_hat, inv_std)
        if not self.elementwise_affine:
            return x_hat
        return self.weight.data * x_hat + self.bias.data  # eq. 27

    def backward(self, grad: Any) -> Any:
        """Given G = ∂C/∂Y: sets ∂C/∂γ = Σ G ⊙ x̂ and ∂C/∂β = Σ G over the leading axes; returns
        ∂C/∂x (eq. 28)."""
        x_hat, inv_std = self._take_cache(grad)
        xp = self.backend.xp
        k = len(self.normalized_shape)
        lead = tuple(range(len(x_hat.shape) - k))
        axes = tuple(range(len(x_hat.shape) - k, len(x_hat.shape)))
        g_hat = grad
        if self.elementwise_affine:
            self.weight.grad = xp.sum(grad * x_hat, axis=lead)  # eq. 28
            self.bias.grad = xp.sum(grad, axis=lead)  # eq. 28
            g_hat = grad * self.weight.data
        m = math.prod(self.normalized_shape)
        sum_g = xp.sum(g_hat, axis=axes, keepdims=True)
        sum_g_xhat = xp.sum(g_hat * x_hat, axis=axes, keepdims=True)
        return (inv_std / m) * (m * g_hat - sum_g - x_hat * sum_g_xhat)  # eq. 28

    def clear_cache(self) -> None:
        self._cache = None
