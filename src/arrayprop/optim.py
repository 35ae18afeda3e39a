"""Optimizers: in-place updates of ``Parameter.data`` from ``Parameter.grad``.

Ordered from simple to complex, each a few lines over one base class that keeps per-parameter
state. Array API standard only; the plain SGD update W ← W − η ∂C/∂W (eq. 7) goes through
:func:`arrayprop.kernels.sgd_update`, which updates in place where the backend allows it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from . import kernels
from .backend import backend_of
from .layers import Parameter

__all__ = ["SGD", "Optimizer"]


def _check_hyper(owner: str, name: str, value: float, *, positive: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "positive" if positive else "non-negative"
        raise ValueError(f"{owner}: {name} must be a finite, {need} number, got {value!r}")
    return value


class Optimizer:
    """Base class: keeps the parameters, the learning rate and a state dict per parameter.

    Subclasses implement ``_update(i, w, g) -> new w`` for parameter ``i``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: expected Parameters, got {type(p).__name__}"
                )
        self.lr = _check_hyper(type(self).__name__, "lr", lr, positive=True)
        first = self.params[0].data
        self.backend = backend_of(first, dtype=first.dtype)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                p.data = self._update(i, p.data, p.grad)

    def _update(self, i: int, w: Any, g: Any) -> Any:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments other than the parameters (for checkpoints)."""
        return {"lr": self.lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    With weight decay λ, momentum μ and velocity v (the same conventions as ``torch.optim.SGD``):
    g ← g + λ W;  v ← μ v + g;  g ← g + μ v (Nesterov) or g ← v;  W ← W − η g.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_hyper("SGD", "momentum", momentum)
        self.weight_decay = _check_hyper("SGD", "weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs a positive momentum")

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            state = self.state[i]
            v = state.get("velocity")
            v = g if v is None else self.momentum * v + g
            state["velocity"] = v
            g = g + self.momentum * v if self.nesterov else v
        return kernels.sgd_update(self.backend, w, g, self.lr)
