"""Constraints on arguments, as data: one place, one message shape.

A constraint says what a value may be (:class:`Interval`, :class:`Options`); :func:`check`
tests a value against it and raises ``ValueError`` with the same shape everywhere::

    Adam: lr must be a finite number > 0, got -1.0
    <whose>: <what> must be <allowed>, got <value>

Callers keep their constraints as module-level data (``LR = Interval(float, 0, None,
closed="neither")``), so the rules can be read, tested and listed without running the code that
uses them. See docs/architecture.md.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NON_NEGATIVE",
    "POSITIVE",
    "POSITIVE_INT",
    "UNIT_OPEN",
    "Interval",
    "Options",
    "check",
]


@dataclass(frozen=True)
class Interval:
    """Real numbers (``kind=float``) or integers (``kind=int``) between ``low`` and ``high``.

    ``None`` for a bound means unbounded on that side; ``closed`` says which bounds belong to the
    interval: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``. Floats must be finite; bools
    are never numbers here (``True`` is no learning rate).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def convert(self, value: Any) -> Any:
        """``value`` as ``kind``, or raise ``TypeError`` / ``ValueError`` when it is not one."""
        if isinstance(value, bool) or isinstance(value, str):
            raise TypeError
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                raise TypeError
            return int(value)
        if not isinstance(value, numbers.Real):
            raise TypeError
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        return value

    def contains(self, value: Any) -> bool:
        low_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        high_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return low_ok and high_ok

    def describe(self) -> str:
        noun = "an int" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{noun} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            op = ">=" if self.closed in ("both", "left") else ">"
            return f"{noun} {op} {_fmt(self.low)}"
        if self.high is not None:
            op = "<=" if self.closed in ("both", "right") else "<"
            return f"{noun} {op} {_fmt(self.high)}"
        return noun


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (names of losses, reductions, modes, ...)."""

    values: tuple[Any, ...]

    def convert(self, value: Any) -> Any:
        return value

    def contains(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:  # an unhashable or incomparable value
            return False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


#: An int >= 1: epochs, batch sizes, step counts.
POSITIVE_INT = Interval(int, 1, None)
#: A finite number > 0: learning rates, norms, scales.
POSITIVE = Interval(float, 0, None, closed="neither")
#: A finite number >= 0: weight decay, momentum, epsilons that may be 0.
NON_NEGATIVE = Interval(float, 0, None)
#: A fraction strictly between 0 and 1: split sizes.
UNIT_OPEN = Interval(float, 0, 1, closed="neither")


def check(whose: str, what: str, value: Any, constraint: Interval | Options) -> Any:
    """Return ``value`` (converted to the constraint's kind) or raise ``ValueError``.

    The message reads ``"{whose}: {what} must be {allowed}, got {value!r}"``; ``whose`` may be
    empty for a function's own argument (``"epochs must be an int >= 1, got 0"``).
    """
    try:
        converted = constraint.convert(value)
        ok = constraint.contains(converted)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        prefix = f"{whose}: " if whose else ""
        raise ValueError(f"{prefix}{what} must be {constraint.describe()}, got {value!r}")
    return converted
