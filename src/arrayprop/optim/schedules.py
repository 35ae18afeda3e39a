"""Learning-rate schedules: set ``optimizer.lr`` from a closed form of the step count.

Each schedule scales the optimizer's ``initial_lr`` (η₀, the learning rate it was built with)
by a function of t, the number of :meth:`Schedule.step` calls so far, and writes the result to
``optimizer.lr``: at construction (t = 0) and after every ``step()``. The values equal those of
the PyTorch's ``optim.lr_scheduler`` class of the same name with the same settings.

Call ``step()`` once per epoch for the epoch schedules (:class:`StepLR`,
:class:`ExponentialLR`, :class:`CosineAnnealingLR`) or once per iteration for a warm-up
(:class:`LinearWarmup`); t counts whatever unit the caller steps in. To chain a warm-up and
another schedule (:class:`SequentialLR`, :func:`with_warmup`), step both in the same unit, e.g.
give a cosine schedule its length in iterations.

Pure host arithmetic on Python floats: no arrays, no device work.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from arrayprop.errors import CheckpointError
from arrayprop.optim.optimizer import STEPS, Optimizer, check_state
from arrayprop.validation import NON_NEGATIVE, POSITIVE_INT, Interval, check

__all__ = [
    "ARGUMENTS",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearWarmup",
    "Schedule",
    "SequentialLR",
    "StepLR",
    "with_warmup",
]


#: What the schedules' arguments may be, by name.
ARGUMENTS = {
    "step_size": POSITIVE_INT,
    "T_max": POSITIVE_INT,
    "warmup_steps": POSITIVE_INT,
    "milestone": POSITIVE_INT,
    "gamma": NON_NEGATIVE,
    "eta_min": NON_NEGATIVE,
    "start_factor": Interval(float, 0, 1),
}


class Schedule:
    """Base class: ``optimizer.lr = lr_at(t)`` after each :meth:`step`.

    Subclasses implement :meth:`lr_at` (the closed form) and :meth:`hyperparameters`.

    Attributes
    ----------
    optimizer : Optimizer
    base_lr : float
        η₀, the optimizer's ``initial_lr`` when the schedule was built.
    steps : int
        t, the number of :meth:`step` calls so far.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lr = optimizer.initial_lr
        self.steps = 0

    def _start(self) -> None:
        """Subclasses call this last in ``__init__``: the learning rate of t = 0."""
        self.optimizer.lr = self.get_lr()

    def lr_at(self, t: int) -> float:
        """The learning rate after ``t`` steps."""
        raise NotImplementedError

    def get_lr(self) -> float:
        """The current learning rate, ``lr_at(steps)``."""
        return self.lr_at(self.steps)

    def step(self) -> None:
        """Advance t by one and set the optimizer's learning rate."""
        self.steps += 1
        self.optimizer.lr = self.get_lr()

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments other than the optimizer, JSON-able."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``type``, ``hyperparameters``, ``base_lr`` and ``steps``, all JSON-able."""
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "base_lr": self.base_lr,
            "steps": self.steps,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore t and η₀ and set the optimizer's learning rate to match.

        Raises
        ------
        CheckpointError
            For another schedule type or other hyperparameters.
        """
        owner = type(self).__name__
        try:
            kind, hyper = state_dict["type"], state_dict["hyperparameters"]
            base_lr, steps = state_dict["base_lr"], state_dict["steps"]
        except (KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{owner}: not a schedule state dict (need type, hyperparameters, base_lr, "
                f"steps): {exc!r}"
            ) from exc
        if kind != owner:
            raise CheckpointError(f"{owner}: expected a state dict of {owner}, got {kind!r}")
        if dict(hyper) != self.hyperparameters():
            raise CheckpointError(
                f"{owner}: checkpoint hyperparameters {dict(hyper)} differ from "
                f"{self.hyperparameters()}"
            )
        steps = check_state(owner, "steps", steps, STEPS)
        self.base_lr, self.steps = float(base_lr), steps
        self.optimizer.lr = self.get_lr()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """Decay by γ every ``step_size`` steps: η_t = η₀ γ^⌊t / step_size⌋."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        self.step_size = check("StepLR", "step_size", step_size, ARGUMENTS["step_size"])
        self.gamma = check("StepLR", "gamma", gamma, ARGUMENTS["gamma"])
        self._start()

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)

    def hyperparameters(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(Schedule):
    """Decay by γ every step: η_t = η₀ γ^t."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        super().__init__(optimizer)
        self.gamma = check("ExponentialLR", "gamma", gamma, ARGUMENTS["gamma"])
        self._start()

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma**t

    def hyperparameters(self) -> dict[str, Any]:
        return {"gamma": self.gamma}


class CosineAnnealingLR(Schedule):
    """Half a cosine from η₀ down to η_min over T_max steps (Loshchilov & Hutter, 2017).

    η_t = η_min + (η₀ − η_min) (1 + cos(π t / T_max)) / 2.

    As in torch, the formula keeps going after T_max (the rate climbs back to η₀ at 2 T_max):
    stop stepping at T_max, or chain a constant schedule, to stay at η_min.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(optimizer)
        self.T_max = check("CosineAnnealingLR", "T_max", T_max, ARGUMENTS["T_max"])
        self.eta_min = check("CosineAnnealingLR", "eta_min", eta_min, ARGUMENTS["eta_min"])
        self._start()

    def lr_at(self, t: int) -> float:
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class LinearWarmup(Schedule):
    """Ramp linearly from ``start_factor`` η₀ to η₀ over ``warmup_steps`` steps, then hold.

    η_t = η₀ (f₀ + (1 − f₀) min(t, warmup_steps) / warmup_steps), with f₀ = ``start_factor``:
    PyTorch's ``optim.lr_scheduler.LinearLR(start_factor=f₀, end_factor=1,
    total_iters=warmup_steps)``, except that f₀ = 0 (the first step has η = 0) is allowed.
    Usually stepped once per iteration.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 0.0) -> None:
        super().__init__(optimizer)
        self.warmup_steps = check(
            "LinearWarmup", "warmup_steps", warmup_steps, ARGUMENTS["warmup_steps"]
        )
        self.start_factor = check(
            "LinearWarmup", "start_factor", start_factor, ARGUMENTS["start_factor"]
        )
        self._start()

    def lr_at(self, t: int) -> float:
        f0 = self.start_factor
        return self.base_lr * (f0 + (1 - f0) * min(t, self.warmup_steps) / self.warmup_steps)

    def hyperparameters(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "start_factor": self.start_factor}


class SequentialLR(Schedule):
    """Run ``schedules[k]`` from step ``milestones[k-1]`` on, each restarted at its own t = 0.

    η_t = schedules[k].lr_at(t − m_k) with k = #{milestones ≤ t} and m_k = milestones[k-1]
    (m_0 = 0), as PyTorch's ``optim.lr_scheduler.SequentialLR``. The schedules must belong to
    ``optimizer``; only this one is stepped.
    """

    def __init__(
        self, optimizer: Optimizer, schedules: Sequence[Schedule], milestones: Sequence[int]
    ) -> None:
        super().__init__(optimizer)
        self.schedules = list(schedules)
        self.milestones = [
            check("SequentialLR", "milestone", m, ARGUMENTS["milestone"]) for m in milestones
        ]
        if not self.schedules:
            raise ValueError("SequentialLR: needs at least one schedule")
        for k, s in enumerate(self.schedules):
            if not isinstance(s, Schedule) or s.optimizer is not optimizer:
                raise ValueError(
                    f"SequentialLR: schedules[{k}] is not a Schedule of this optimizer"
                )
        if len(self.milestones) != len(self.schedules) - 1:
            raise ValueError(
                f"SequentialLR: {len(self.schedules)} schedules need "
                f"{len(self.schedules) - 1} milestones, got {len(self.milestones)}"
            )
        if any(a >= b for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise ValueError(f"SequentialLR: milestones must increase, got {self.milestones}")
        self._start()

    def lr_at(self, t: int) -> float:
        k = bisect_right(self.milestones, t)
        return self.schedules[k].lr_at(t - (self.milestones[k - 1] if k else 0))

    def hyperparameters(self) -> dict[str, Any]:
        return {"milestones": list(self.milestones)}

    def state_dict(self) -> dict[str, Any]:
        """The base entries plus ``schedules``: the state dict of each chained schedule."""
        return {**super().state_dict(), "schedules": [s.state_dict() for s in self.schedules]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        saved = state_dict.get("schedules")
        if not isinstance(saved, list) or len(saved) != len(self.schedules):
            count = len(saved) if isinstance(saved, list) else saved
            raise CheckpointError(
                f"SequentialLR: checkpoint chains {count} schedules, this one {len(self.schedules)}"
            )
        for s, d in zip(self.schedules, saved, strict=True):
            s.load_state_dict(d)
        super().load_state_dict(state_dict)


def with_warmup(schedule: Schedule, warmup_steps: int, start_factor: float = 0.0) -> SequentialLR:
    """``warmup_steps`` of :class:`LinearWarmup`, then ``schedule`` from its t = 0.

    Example: 5 warm-up epochs, then a cosine over the remaining 45::

        sched = with_warmup(CosineAnnealingLR(opt, T_max=45), warmup_steps=5)
    """
    warmup = LinearWarmup(schedule.optimizer, warmup_steps, start_factor)
    return SequentialLR(schedule.optimizer, [warmup, schedule], [warmup_steps])
