"""``Dense``: the fully connected layer, Z = X W + b, and its matrix-form backward pass.

Array API only, through ``backend.xp``; backend-specific speed lives behind
:mod:`arrayprop.kernels`. Equation numbers refer to docs/math.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from arrayprop import kernels
from arrayprop.backends import Backend, get_backend
from arrayprop.errors import ShapeError
from arrayprop.nn.init import INITIALIZERS, draw
from arrayprop.nn.layer import (
    Layer,
    check_grad,
    check_input,
    check_last_axis,
    config_dims,
    exact_array,
)
from arrayprop.nn.parameter import Parameter
from arrayprop.nn.registry import register_layer
from arrayprop.random import host_rng
from arrayprop.validation import POSITIVE_INT, check

__all__ = ["WIDTH", "Dense"]

#: What ``in_features`` and ``out_features`` may be.
WIDTH = POSITIVE_INT


@register_layer
class Dense(Layer):
    """Fully connected layer, Z = X W + b.

    Parameters
    ----------
    in_features, out_features : int
        Widths of the input and the output.
    weight : array-like, shape (in_features, out_features), optional
        Exact initial weights (any array-like; copied onto the backend). Default: drawn by
        ``init``.
    bias : array-like, shape (out_features,), optional
        Exact initial bias. Default: zeros.
    init : str or callable
        ``"he"`` (default), ``"he_uniform"``, ``"glorot"``, ``"glorot_uniform"``, ``"normal"``,
        ``"zeros"``, or ``f(shape, rng) -> ndarray``.
    seed : int or numpy.random.Generator, optional
        Seed of the host generator the weights are drawn from.
    backend : str or Backend, optional
        Where the parameters live (default: :func:`~arrayprop.get_backend`).
    dtype : str, optional
        Overrides the backend's float dtype.

    Attributes
    ----------
    weight : Parameter, shape (in_features, out_features)
    bias : Parameter, shape (out_features,)
    """

    speed_hints = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        weight: Any = None,
        bias: Any = None,
        init: str | Callable = "he",
        seed: Any = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        self.in_features = check("Dense", "in_features", in_features, WIDTH)
        self.out_features = check("Dense", "out_features", out_features, WIDTH)
        self.backend = be = get_backend(backend, dtype=dtype)
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        if weight is None:
            host_w = draw(init, (in_features, out_features), host_rng(seed), repr(self))
            w = be.asarray(host_w, dtype=be.dtype)
        else:
            w = exact_array(self, weight, (in_features, out_features), "weight")
        b = (
            be.zeros((out_features,))
            if bias is None
            else exact_array(self, bias, (out_features,), "bias")
        )
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(b, "bias")
        self._x = None

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        """Z = X W + b.  x : (..., in_features) -> (..., out_features)."""
        be = self.backend
        if not be.owns(x):
            be.check(x, f"{self!r} input")
        check_last_axis(self, x, self.in_features, "input")
        check_input(self, x, self.weight.data.dtype)
        if self.training and self.weight.grad_factors is not None:
            # The previous step's factors of ∂C/∂W: drop them now rather than keep two steps'
            # (an evaluation pass leaves the last training step's gradient readable).
            self.weight.grad = None
        lead = tuple(x.shape[:-1])
        if len(lead) > 1:  # (..., in) as rows of one GEMM
            x = be.xp.reshape(x, (-1, self.in_features))
        self._x = x
        z = kernels.linear(be, x, self.weight.data, self.bias.data)  # eq. 1
        return z if len(lead) == 1 else be.xp.reshape(z, (*lead, self.out_features))

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> Any:
        """Given δ = ∂C/∂Z (..., out_features): sets ∂C/∂W = Xᵀ δ (formed when read, so an
        optimizer may fold it into its update) and ∂C/∂b = Σ_rows δ; returns δ Wᵀ."""
        x = self._x
        if x is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        check_grad(self, grad_out, x.dtype)
        check_last_axis(self, grad_out, self.out_features, "gradient")
        be = self.backend
        shape = tuple(grad_out.shape)
        delta = grad_out if len(shape) == 2 else be.xp.reshape(grad_out, (-1, self.out_features))
        if delta.shape[0] != x.shape[0]:
            raise ShapeError(
                f"{self!r}: gradient has {delta.shape[0]} rows but the input had {x.shape[0]}"
            )
        self._x = None
        self.weight.set_grad_factors(be, x, delta)  # eq. 5, formed when read
        self.bias.grad = kernels.bias_grad(be, delta)  # eq. 6
        if not input_grad:
            return None
        g_in = kernels.matmul(be, delta, self.weight.data.T)  # eq. 4
        return g_in if len(shape) == 2 else be.xp.reshape(g_in, (*shape[:-1], self.in_features))

    def clear_cache(self) -> None:
        self._x = None

    def gemm_flops(self, sample_shape: tuple[int, ...]) -> int:
        """FLOPs of the forward GEMM per sample whose output has ``sample_shape`` (..., out)."""
        rows = math.prod(sample_shape[:-1])
        return 2 * self.in_features * self.out_features * rows

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        (n_in,), (n_out,) = config_dims(config, "in_features"), config_dims(config, "out_features")
        return {"weight": (n_in, n_out), "bias": (n_out,)}

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "in_features": self.in_features,
            "out_features": self.out_features,
        }
        if self.init in INITIALIZERS:  # a custom initialiser cannot be named in a file
            config["init"] = self.init
        return config
