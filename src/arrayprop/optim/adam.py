"""Adam (L2 weight decay in the gradient) and AdamW (decoupled weight decay), optionally AMSGrad."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from arrayprop import kernels
from arrayprop.nn.parameter import Parameter
from arrayprop.optim.optimizer import DECAY_RATE, EPS, LR, Optimizer
from arrayprop.validation import NON_NEGATIVE, check

__all__ = ["Adam", "AdamW"]


#: What the numeric hyperparameters of Adam and AdamW may be (``betas``: each of the pair).
HYPERPARAMETERS = {"lr": LR, "betas": DECAY_RATE, "eps": EPS, "weight_decay": NON_NEGATIVE}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), optionally AMSGrad (Reddi et al., 2018).

    With moment decay rates β₁, β₂, weight decay λ (added to the gradient, i.e. L2
    regularisation; see :class:`AdamW` for the decoupled form), moments m, v starting at zero and
    the parameter's step count t = 1, 2, … (as PyTorch's ``optim.Adam``; ε is added to the
    bias-corrected root, not under it)::

        g ← g + λ W
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v_max ← max(v_max, v);  v ← v_max          (amsgrad only, for the next line)
        W ← W − η / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    name = "adam"
    #: AdamW sets this: decay W directly instead of adding λ W to the gradient.
    _decoupled: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        owner = type(self).__name__
        if not isinstance(betas, Sequence) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        rules = HYPERPARAMETERS
        self.betas = (
            check(owner, "betas[0]", betas[0], rules["betas"]),
            check(owner, "betas[1]", betas[1], rules["betas"]),
        )
        self.eps = check(owner, "eps", eps, rules["eps"])
        self.weight_decay = check(owner, "weight_decay", weight_decay, rules["weight_decay"])
        self.amsgrad = bool(amsgrad)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        xp, state = self.backend.xp, self.state[i]
        beta1, beta2 = self.betas
        t = self._count(i)
        if self.weight_decay and self._decoupled:
            w = w * (1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * w
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        m = (1 - beta1) * g if m is None else beta1 * m + (1 - beta1) * g
        v = (1 - beta2) * (g * g) if v is None else beta2 * v + (1 - beta2) * (g * g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.amsgrad:
            v_max = state.get("max_exp_avg_sq")
            v = v if v_max is None else xp.maximum(v_max, v)
            state["max_exp_avg_sq"] = v
        denom = xp.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        return kernels.sgd_update(self.backend, w, m / denom, self.lr / (1 - beta1**t))  # eq. 7


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    As :class:`Adam`, except that the decay shrinks the weights before the Adam step instead of
    entering the gradient, so it is not rescaled by the adaptive step (as PyTorch's
    ``optim.AdamW``)::

        W ← W (1 − η λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v_max ← max(v_max, v);  v ← v_max          (amsgrad only, for the next line)
        W ← W − η / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    name = "adamw"
    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
