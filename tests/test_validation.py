"""The constraints of arrayprop.validation: what passes, what is refused, and the message shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arrayprop.validation import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    UNIT_OPEN,
    Interval,
    Options,
    check,
)


@pytest.mark.parametrize(
    ("constraint", "value", "expected"),
    [
        (POSITIVE, 1e-3, 1e-3),
        (POSITIVE, np.float32(0.5), 0.5),
        (POSITIVE, 2, 2.0),
        (NON_NEGATIVE, 0, 0.0),
        (POSITIVE_INT, 3, 3),
        (POSITIVE_INT, np.int64(7), 7),
        (UNIT_OPEN, 0.25, 0.25),
        (Interval(float, 0, 1, closed="left"), 0.0, 0.0),
        (Interval(float, None, 5), -1e9, -1e9),
        (Options(("mean", "sum")), "sum", "sum"),
    ],
)
def test_valid_values_pass_converted(constraint, value, expected):
    out = check("Owner", "arg", value, constraint)
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("constraint", "value", "allowed"),
    [
        (POSITIVE, 0, "a finite number > 0"),
        (POSITIVE, -1.0, "a finite number > 0"),
        (POSITIVE, math.nan, "a finite number > 0"),
        (POSITIVE, math.inf, "a finite number > 0"),
        (POSITIVE, True, "a finite number > 0"),
        (POSITIVE, "0.1", "a finite number > 0"),
        (POSITIVE, None, "a finite number > 0"),
        (NON_NEGATIVE, -1e-12, "a finite number >= 0"),
        (POSITIVE_INT, 0, "an int >= 1"),
        (POSITIVE_INT, 2.0, "an int >= 1"),
        (POSITIVE_INT, False, "an int >= 1"),
        (UNIT_OPEN, 1.0, "a finite number in (0, 1)"),
        (UNIT_OPEN, 0, "a finite number in (0, 1)"),
        (Interval(float, 0, 1, closed="left"), 1.0, "a finite number in [0, 1)"),
        (Interval(float, 0, 1, closed="right"), 0.0, "a finite number in (0, 1]"),
        (Interval(float, None, 5, closed="neither"), 5, "a finite number < 5"),
        (Options(("mean", "sum")), "avg", "one of 'mean', 'sum'"),
        (Options(("mean", "sum")), ["mean"], "one of 'mean', 'sum'"),
    ],
)
def test_invalid_values_name_owner_argument_allowed_and_got(constraint, value, allowed):
    with pytest.raises(ValueError) as info:
        check("Adam", "lr", value, constraint)
    assert str(info.value) == f"Adam: lr must be {allowed}, got {value!r}"


def test_message_without_owner():
    with pytest.raises(ValueError, match=r"^epochs must be an int >= 1, got 0$"):
        check("", "epochs", 0, POSITIVE_INT)
