"""Activation layers: elementwise A = f(Z) (ReLU, LeakyReLU, Sigmoid, Tanh, Identity) and the
row-wise :class:`Softmax`.

Each keeps its output A for the backward pass, whose derivative f'(Z) is read off A (eq. 9 of
docs/math.md). Array API only, through ``backend.xp`` and :mod:`arrayprop.kernels`.
"""

from __future__ import annotations

from typing import Any

from arrayprop import kernels
from arrayprop.errors import ShapeError
from arrayprop.nn.layer import Layer, check_grad, check_last_axis
from arrayprop.nn.registry import register_layer
from arrayprop.validation import UNIT_OPEN, check

__all__ = [
    "ACTIVATIONS",
    "LEAKY_ALPHA",
    "Activation",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
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


#: Activation names accepted by :func:`~arrayprop.nn.mlp` and the CLI.
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "identity": Identity,
    "softmax": Softmax,
}
