"""Adagrad: a per-element step size from the sum of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arrayprop import kernels
from arrayprop.nn.parameter import Parameter
from arrayprop.optim.optimizer import EPS, LR, Optimizer
from arrayprop.validation import NON_NEGATIVE, check

__all__ = ["Adagrad"]


#: What Adagrad's numeric hyperparameters may be.
HYPERPARAMETERS = {
    "lr": LR,
    "lr_decay": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "eps": EPS,
    "initial_accumulator_value": NON_NEGATIVE,
}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): a per-element step size from the sum of squared gradients.

    With weight decay λ, learning-rate decay δ, accumulator G (starting at
    ``initial_accumulator_value``) and the parameter's step count t = 1, 2, …
    (as PyTorch's ``optim.Adagrad``)::

        g  ← g + λ W
        η_t = η / (1 + (t − 1) δ)
        G  ← G + g²
        W  ← W − η_t g / (√G + ε)
    """

    name = "adagrad"

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        rules = HYPERPARAMETERS
        self.lr_decay = check("Adagrad", "lr_decay", lr_decay, rules["lr_decay"])
        self.weight_decay = check("Adagrad", "weight_decay", weight_decay, rules["weight_decay"])
        self.eps = check("Adagrad", "eps", eps, rules["eps"])
        self.initial_accumulator_value = check(
            "Adagrad",
            "initial_accumulator_value",
            initial_accumulator_value,
            rules["initial_accumulator_value"],
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "eps": self.eps,
            "initial_accumulator_value": self.initial_accumulator_value,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        xp, state = self.backend.xp, self.state[i]
        t = self._count(i)
        if self.weight_decay:
            g = g + self.weight_decay * w
        G = state.get("sum")
        if G is None:
            G = xp.full_like(w, self.initial_accumulator_value)
        G = G + g * g
        state["sum"] = G
        lr_t = self.lr / (1 + (t - 1) * self.lr_decay)
        return kernels.sgd_update(self.backend, w, g / (xp.sqrt(G) + self.eps), lr_t)  # eq. 7
