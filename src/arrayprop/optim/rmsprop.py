"""RMSProp: divide the gradient by a running RMS of it, optionally centred and with momentum."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arrayprop import kernels
from arrayprop.nn.parameter import Parameter
from arrayprop.optim.optimizer import DECAY_RATE, EPS, LR, Optimizer
from arrayprop.validation import NON_NEGATIVE, check

__all__ = ["RMSProp"]


#: What RMSProp's numeric hyperparameters may be.
HYPERPARAMETERS = {
    "lr": LR,
    "alpha": DECAY_RATE,
    "eps": EPS,
    "momentum": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
}


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton, 2012): divide by a running RMS of the gradient.

    With weight decay λ, smoothing α, momentum μ and running averages s (of g²), ḡ (of g,
    ``centered`` only) and buffer b (``momentum > 0`` only), all starting at zero
    (as PyTorch's ``optim.RMSprop``)::

        g ← g + λ W
        s ← α s + (1 − α) g²
        ḡ ← α ḡ + (1 − α) g;  d = √(s − ḡ²) + ε   (centered)
                              d = √s + ε          (otherwise)
        b ← μ b + g / d;  u = b                   (μ > 0)
                          u = g / d               (otherwise)
        W ← W − η u
    """

    name = "rmsprop"

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        rules = HYPERPARAMETERS
        self.alpha = check("RMSProp", "alpha", alpha, rules["alpha"])
        self.eps = check("RMSProp", "eps", eps, rules["eps"])
        self.momentum = check("RMSProp", "momentum", momentum, rules["momentum"])
        self.weight_decay = check("RMSProp", "weight_decay", weight_decay, rules["weight_decay"])
        self.centered = bool(centered)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "centered": self.centered,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        xp, state, alpha = self.backend.xp, self.state[i], self.alpha
        if self.weight_decay:
            g = g + self.weight_decay * w
        s = state.get("square_avg")
        s = (1 - alpha) * (g * g) if s is None else alpha * s + (1 - alpha) * (g * g)
        state["square_avg"] = s
        if self.centered:
            g_avg = state.get("grad_avg")
            g_avg = (1 - alpha) * g if g_avg is None else alpha * g_avg + (1 - alpha) * g
            state["grad_avg"] = g_avg
            d = xp.sqrt(s - g_avg * g_avg) + self.eps
        else:
            d = xp.sqrt(s) + self.eps
        u = g / d
        if self.momentum:
            b = state.get("momentum_buffer")
            u = u if b is None else self.momentum * b + u
            state["momentum_buffer"] = u
        return kernels.sgd_update(self.backend, w, u, self.lr)  # eq. 7
