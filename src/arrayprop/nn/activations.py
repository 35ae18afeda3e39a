"""Activation layers: elementwise A = f(Z) (ReLU, LeakyReLU, Sigmoid, Tanh, Identity), the
smooth GELU, SiLU, ELU and Softplus, and the row-wise :class:`Softmax`.

The first five keep their output A for the backward pass, whose derivative f'(Z) is read off A
(eq. 9 of docs/math.md); the smooth ones keep their input Z (eqs. 18–22), since f'(Z) is not a
function of A alone for them. Array API only, through ``backend.xp`` and :mod:`arrayprop.kernels`.
"""

from __future__ import annotations

import math
from typing import Any

from arrayprop import kernels
from arrayprop.errors import ShapeError
from arrayprop.nn.layer import Layer, check_grad, check_last_axis
from arrayprop.nn.registry import register_layer
from arrayprop.validation import POSITIVE, UNIT_OPEN, Options, check

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "ELU_ALPHA",
    "GELU",
    "GELU_APPROXIMATE",
    "LEAKY_ALPHA",
    "Activation",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "normal_cdf",
]

#: What LeakyReLU's slope for z < 0 may be.
LEAKY_ALPHA = UNIT_OPEN


def take_output(layer: Layer, grad_out: Any) -> Any:
    """The output ``layer``'s forward kept (in ``_a``), checked against ∂C/∂output (backward
    after forward, the same backend, dtype and shape) and released: one backward per forward."""
    a = layer._a
    if a is None:
        raise RuntimeError(f"{layer!r}: backward called before forward")
    check_grad(layer, grad_out, a.dtype)
    if tuple(grad_out.shape) != tuple(a.shape):
        raise ShapeError(
            f"{layer!r}: gradient of shape {tuple(grad_out.shape)} does not match the output "
            f"shape {tuple(a.shape)}"
        )
    layer._a = None
    return a


class Activation(Layer):
    """An elementwise A = f(Z) whose derivative is computed from the cached output A.

    Subclasses set ``kind``, the name of f in :mod:`arrayprop.kernels`.
    """

    kind = "identity"
    speed_hints = True
    retains_output = True
    preserves_shape = True

    def __init__(self) -> None:
        self._a = None

    def clear_cache(self) -> None:
        self._a = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def _alpha(self) -> float:
        return 0.0

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        be = self.backend_for(x)
        check_last_axis(self, x, None, "input")
        a = kernels.activation(be, self.kind, x, self._alpha, inplace=inplace)  # eq. 2
        self._a = a
        return a

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> Any:
        a = take_output(self, grad_out)
        if not input_grad:
            return None
        # δ = ∂C/∂A ⊙ f'(Z): the factor of eqs. 3–4 that belongs to this layer.
        return kernels.activation_grad(  # eq. 3, eq. 4
            self.backend, self.kind, a, grad_out, self._alpha, inplace=inplace
        )


@register_layer
class Identity(Activation):
    """f(z) = z, f'(z) = 1."""

    kind = "identity"
    retains_output = False


@register_layer
class ReLU(Activation):
    """f(z) = max(z, 0), f'(z) = [z > 0]  (read off the output: [a > 0])."""

    kind = "relu"


@register_layer
class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^{−z}), f'(z) = a (1 − a). Stable for any |z| (no overflow)."""

    kind = "sigmoid"


@register_layer
class Tanh(Activation):
    """f(z) = tanh z, f'(z) = 1 − a²."""

    kind = "tanh"


@register_layer
class LeakyReLU(Activation):
    """f(z) = z for z > 0, else alpha·z; f'(z) = 1 or alpha (alpha > 0)."""

    kind = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = check("LeakyReLU", "alpha", alpha, LEAKY_ALPHA)

    @property
    def _alpha(self) -> float:
        return self.alpha

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register_layer
class Softmax(Layer):
    """Softmax over the last axis, a_i = e^{z_i} / Σ_j e^{z_j} (max-shifted: no overflow).

    Backward: ∂C/∂z = a ⊙ (g − Σ_j g_j a_j) (eq. 10). With a cross-entropy loss prefer
    :class:`~arrayprop.nn.SoftmaxCrossEntropy` on the logits, which fuses both.
    """

    speed_hints = True
    retains_output = True
    preserves_shape = True

    def __init__(self) -> None:
        self._a = None

    def __repr__(self) -> str:
        return "Softmax()"

    def clear_cache(self) -> None:
        self._a = None

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        be = self.backend_for(x)
        check_last_axis(self, x, None, "input")
        self._a = kernels.softmax(be, x)
        return self._a

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> Any:
        a = take_output(self, grad_out)
        xp = self.backend.xp
        return a * (grad_out - xp.sum(grad_out * a, axis=-1, keepdims=True))  # eq. 10


#: What ELU's scale of the negative branch may be.
ELU_ALPHA = POSITIVE
#: GELU's forms: the exact x Φ(x) or PyTorch's tanh approximation.
GELU_APPROXIMATE = Options(("none", "tanh"))

# erf(t) for t < _ERF_SPLIT is summed from its Maclaurin-type series, erfc(t) above it from its
# continued fraction; 30 series terms and 40 fraction levels bring both to float64 rounding at
# the split (see normal_cdf).
_ERF_SPLIT = 2.0
_ERF_SERIES_TERMS = 30
_ERFC_FRACTION_DEPTH = 40
# Where e^{−z²/2}, the tanh of GELU's u and erfc are 0 or ±1 in float64: inputs are clipped
# to ±_TAIL inside them so that z² and z³ cannot overflow.
_TAIL = 40.0


def normal_cdf(xp: Any, z: Any) -> Any:
    """Φ(z) = (1 + erf(z/√2)) / 2, the standard normal CDF, in the Array API only.

    The standard has no ``erf``, so with t = |z|/√2:

    - t < 2: erf t = (2/√π) e^{−t²} Σ_{n≥0} 2ⁿ t^{2n+1} / (1·3···(2n+1)), 30 terms (all
      positive: no cancellation; the first omitted term is below 1e-16 of the sum);
    - t ≥ 2: erfc t = (e^{−t²}/√π) / (t + (1/2)/(t + 1/(t + (3/2)/(t + 2/(t + …))))), the
      continued fraction cut at 40 levels and evaluated from the bottom up;

    and Φ(z) = 1 − erfc(t)/2 for z ≥ 0, erfc(t)/2 for z < 0, so the lower tail keeps its relative
    accuracy. Against ``math.erfc`` in float64: erf within 2e-15 relative, erfc within 2e-13
    relative (the cancellation 1 − erf t for t < 2, and the rounding of t² in e^{−t²} for large
    t) until it underflows near z = −38. In float32 the error is float32 rounding of Φ, a few
    1e-7 absolute.

    z : array of any shape -> array of the same shape and dtype.
    """
    t = xp.abs(z) * (1.0 / math.sqrt(2.0))
    # Each branch sees only the inputs it is accurate (and finite) for; xp.where picks.
    ts = xp.minimum(t, _ERF_SPLIT)
    t2 = ts * ts
    term = ts
    total = ts
    for n in range(1, _ERF_SERIES_TERMS + 1):
        term = term * (2.0 / (2 * n + 1)) * t2
        total = total + term
    erf_small = (2.0 / math.sqrt(math.pi)) * xp.exp(-t2) * total
    # Past t = 40 erfc t underflows to 0 even in float64; clipping keeps t² finite.
    tc = xp.minimum(xp.maximum(t, _ERF_SPLIT), _TAIL)
    frac = tc
    for k in range(_ERFC_FRACTION_DEPTH, 0, -1):
        frac = tc + (k / 2.0) / frac
    erfc_large = xp.exp(-tc * tc) * (1.0 / math.sqrt(math.pi)) / frac
    erfc_t = xp.where(t < _ERF_SPLIT, 1.0 - erf_small, erfc_large)
    return xp.where(z >= 0, 1.0 - 0.5 * erfc_t, 0.5 * erfc_t)


class _SmoothActivation(Layer):
    """An elementwise A = f(Z) that keeps its input Z: f'(Z) is computed from Z in backward.

    Subclasses write ``_f(xp, z)`` and ``_df(xp, z)`` (f and f', elementwise).
    """

    preserves_shape = True

    def __init__(self) -> None:
        self._z = None

    def clear_cache(self) -> None:
        self._z = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _f(self, xp: Any, z: Any) -> Any:
        raise NotImplementedError

    def _df(self, xp: Any, z: Any) -> Any:
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        """x : (batch, ...) -> f(x), the same shape."""
        be = self.backend_for(x)
        check_last_axis(self, x, None, "input")
        self._z = x
        return self._f(be.xp, x)

    def backward(self, grad: Any) -> Any:
        """∂C/∂A (the output's shape) -> ∂C/∂Z = ∂C/∂A ⊙ f'(Z)."""
        z = self._z
        if z is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        check_grad(self, grad, z.dtype)
        if tuple(grad.shape) != tuple(z.shape):
            raise ShapeError(
                f"{self!r}: gradient of shape {tuple(grad.shape)} does not match the output "
                f"shape {tuple(z.shape)}"
            )
        self._z = None
        return grad * self._df(self.backend.xp, z)


@register_layer
class GELU(_SmoothActivation):
    """Gaussian error linear unit, PyTorch's definitions.

    ``approximate="none"``: f(z) = z Φ(z), f'(z) = Φ(z) + z φ(z), with Φ from
    :func:`normal_cdf` (the standard has no erf) and φ(z) = e^{−z²/2}/√(2π) (eq. 18).
    ``approximate="tanh"``: f(z) = z (1 + tanh u)/2 with u = √(2/π)(z + 0.044715 z³), and its
    exact derivative (eq. 19).
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = check("GELU", "approximate", approximate, GELU_APPROXIMATE)

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def _f(self, xp: Any, z: Any) -> Any:
        if self.approximate == "tanh":
            zc = xp.clip(z, -_TAIL, _TAIL)
            u = math.sqrt(2.0 / math.pi) * (zc + 0.044715 * zc * zc * zc)
            return 0.5 * z * (1.0 + xp.tanh(u))  # eq. 19
        return z * normal_cdf(xp, z)  # eq. 18

    def _df(self, xp: Any, z: Any) -> Any:
        zc = xp.clip(z, -_TAIL, _TAIL)
        if self.approximate == "tanh":
            c = math.sqrt(2.0 / math.pi)
            th = xp.tanh(c * (zc + 0.044715 * zc * zc * zc))
            du = c * (1.0 + 3 * 0.044715 * zc * zc)
            return 0.5 * (1.0 + th) + 0.5 * z * ((1.0 - th * th) * du)  # eq. 19
        pdf = xp.exp(-0.5 * zc * zc) * (1.0 / math.sqrt(2.0 * math.pi))
        return normal_cdf(xp, z) + z * pdf  # eq. 18


def _sigmoid(xp: Any, z: Any) -> Any:
    """σ(z) through e^{−|z|}: no exponential overflows."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@register_layer
class SiLU(_SmoothActivation):
    """Sigmoid linear unit (swish): f(z) = z σ(z), f'(z) = σ(z)(1 + z(1 − σ(z))) (eq. 20)."""

    def _f(self, xp: Any, z: Any) -> Any:
        return z * _sigmoid(xp, z)  # eq. 20

    def _df(self, xp: Any, z: Any) -> Any:
        s = _sigmoid(xp, z)
        return s * (1.0 + z * (1.0 - s))  # eq. 20


@register_layer
class ELU(_SmoothActivation):
    """Exponential linear unit: f(z) = z for z > 0, else alpha (e^z − 1); f'(z) = 1 for z > 0,
    else alpha e^z (eq. 21; at z = 0 the derivative is alpha, as in PyTorch)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = check("ELU", "alpha", alpha, ELU_ALPHA)

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def _f(self, xp: Any, z: Any) -> Any:
        # exp of min(z, 0): the branch xp.where drops must not overflow either.
        return xp.where(z > 0, z, self.alpha * xp.expm1(xp.minimum(z, 0.0)))  # eq. 21

    def _df(self, xp: Any, z: Any) -> Any:
        return xp.where(z > 0, 1.0, self.alpha * xp.exp(xp.minimum(z, 0.0)))  # eq. 21


@register_layer
class Softplus(_SmoothActivation):
    """f(z) = log(1 + e^z), f'(z) = σ(z); above z = 20 f(z) = z and f'(z) = 1 (PyTorch's
    ``beta=1, threshold=20``; eq. 22)."""

    #: PyTorch's default: above it softplus is the identity (log(1 + e^z) − z < 3e-9).
    threshold = 20.0

    def _f(self, xp: Any, z: Any) -> Any:
        soft = xp.log1p(xp.exp(xp.minimum(z, self.threshold)))
        return xp.where(z > self.threshold, z, soft)  # eq. 22

    def _df(self, xp: Any, z: Any) -> Any:
        return xp.where(z > self.threshold, 1.0, _sigmoid(xp, z))  # eq. 22


#: Activation names accepted by :func:`~arrayprop.nn.mlp` and the CLI.
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "identity": Identity,
    "softmax": Softmax,
    "gelu": GELU,
    "silu": SiLU,
    "elu": ELU,
    "softplus": Softplus,
}
