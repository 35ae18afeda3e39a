"""Adagrad: a per-element step size from the sum of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arrayprop import kernels
from arrayprop.nn.parameter import Parameter
from arrayprop.optim.optimizer import Optimizer, check_hyper

__all__ = ["Adagrad"]


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
        self.lr_decay = check_hyper("Adagrad", "lr_decay", lr_decay)
        self.weight_decay = check_hyper("Adagrad", "weight_decay", weight_decay)
        self.eps = check_hyper("Adagrad", "eps", eps, positive=True)
        self.initial_accumulator_value = check_hyper(
            "Adagrad", "initial_accumulator_value", initial_accumulator_value
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
        return kernels.sgd_update(self.backend, w, g / (xp.sqrt(G) + self.eps), lr_t)
