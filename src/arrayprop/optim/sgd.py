"""SGD with momentum, Nesterov momentum and weight decay (as PyTorch's ``optim.SGD``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arrayprop import kernels
from arrayprop.nn.parameter import Parameter
from arrayprop.optim.optimizer import LR, Optimizer
from arrayprop.validation import NON_NEGATIVE, check

__all__ = ["SGD"]


#: What SGD's numeric hyperparameters may be.
HYPERPARAMETERS = {"lr": LR, "momentum": NON_NEGATIVE, "weight_decay": NON_NEGATIVE}


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    With weight decay λ, momentum μ and velocity v (the conventions of PyTorch's ``optim.SGD``
    with zero dampening; v starts as the first gradient; eq. 16 of docs/math.md)::

        g ← g + λ W
        v ← μ v + g
        u ← g + μ v  (Nesterov)  or  u ← v
        W ← W − η u
    """

    name = "sgd"

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        fused: bool | str = "auto",
    ) -> None:
        super().__init__(params, lr)
        self.momentum = check("SGD", "momentum", momentum, HYPERPARAMETERS["momentum"])
        self.weight_decay = check(
            "SGD", "weight_decay", weight_decay, HYPERPARAMETERS["weight_decay"]
        )
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs a positive momentum")
        if fused not in (True, False, "auto"):
            raise ValueError(f"SGD: fused must be True, False or 'auto', got {fused!r}")
        if fused is True and (self.momentum or self.weight_decay):
            raise ValueError(
                "SGD: fused=True needs plain SGD (momentum=0, weight_decay=0): only "
                "W ← W − η Xᵀδ folds into one GEMM"
            )
        self.fused = fused

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def folds(self) -> bool:
        """Whether :meth:`step` folds W ← W − η Xᵀδ into one GEMM for parameters whose gradient
        is an unformed product (Dense weights): plain SGD, ``fused`` not False, and with
        ``"auto"`` only where the backend does it in place (NumPy with its BLAS bound)."""
        if self.fused is False or self.momentum or self.weight_decay:
            return False
        return self.fused is True or kernels.fused_sgd(self.backend)

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient.

        Folded parameters (see :meth:`folds`) keep their gradient factors, so ``.grad`` still
        gives this step's gradient when read afterwards.
        """
        if not self.folds():
            super().step()
            return
        self.steps += 1
        for i, p in enumerate(self.params):
            factors = p.grad_factors
            if factors is not None:
                _, x, delta = factors
                p.data = kernels.sgd_xt_delta_update(self.backend, p.data, x, delta, self.lr)
            elif p.grad is not None:
                p.data = self.apply(i, p.data, p.grad)

    def _update(self, i: int, w: Any, g: Any) -> Any:
        if self.weight_decay:
            g = g + self.weight_decay * w  # eq. 16
        if self.momentum:
            state = self.state[i]
            v = state.get("velocity")
            if v is None:
                # v₁ = g, copied: the velocity must not alias the caller's gradient.
                v = self.backend.xp.asarray(g, copy=True)  # eq. 16
            else:
                v = self.momentum * v + g  # eq. 16
            state["velocity"] = v
            g = g + self.momentum * v if self.nesterov else v  # eq. 16
        return kernels.sgd_update(self.backend, w, g, self.lr)  # eq. 7
