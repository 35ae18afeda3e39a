"""Argument types of the ``arrayprop`` command line, and :class:`UsageError`.

An argument type turns one command-line string into a value or raises
``argparse.ArgumentTypeError``, which argparse reports as a one-line usage error.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arrayprop.validation import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Interval, check

__all__ = [
    "DATASETS",
    "DTYPES",
    "UsageError",
    "constrained",
    "dataset_spec",
    "model_spec",
    "non_negative_float",
    "positive_float",
    "positive_int",
]

#: What ``--dataset`` accepts.
DATASETS = ("digits", "spirals", "xor", "mnist:DIR")
#: What ``--dtype`` accepts.
DTYPES = ("float32", "float64", "float16", "bfloat16")


class UsageError(Exception):
    """A bad command line found after parsing (reported like an argparse error)."""


def constrained(constraint: Interval) -> Callable[[str], Any]:
    """An argument type: the text as ``constraint.kind``, refused unless the constraint holds.

    The refusal reads ``must be <allowed>, got <text>`` (argparse puts ``argument --flag:`` in
    front), with the allowed range from ``constraint.describe()``, so the command line and the
    API describe a range in the same words.
    """

    def parse(text: str) -> Any:
        try:
            value = constraint.kind(text)
        except ValueError:
            # Not even a number: quote it, so that an empty or odd string is visible.
            raise argparse.ArgumentTypeError(
                f"must be {constraint.describe()}, got {text!r}"
            ) from None
        try:
            return check("", "value", value, constraint)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {constraint.describe()}, got {text}"
            ) from None

    return parse


#: ``--epochs``, ``--batch-size``: an int >= 1.
positive_int = constrained(POSITIVE_INT)
#: ``--lr``: a finite number > 0.
positive_float = constrained(POSITIVE)
#: ``--momentum``, ``--weight-decay``: a finite number >= 0.
non_negative_float = constrained(NON_NEGATIVE)


def model_spec(text: str) -> list[int]:
    """``"64-128-10"`` -> [64, 128, 10]."""
    parts = text.replace(",", "-").split("-")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer widths such as 64-128-10"
        ) from None
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: need at least two positive widths (input-...-output), e.g. 64-128-10"
        )
    return sizes


def dataset_spec(text: str) -> str:
    """``digits``, ``spirals``, ``xor`` or ``mnist:DIR`` with an existing DIR (``~`` expanded:
    the shell does not expand it after ``mnist:``)."""
    if text in ("digits", "spirals", "xor"):
        return text
    if text.startswith("mnist:"):
        directory = os.path.expanduser(text[len("mnist:") :])
        if not directory:
            raise argparse.ArgumentTypeError("mnist needs a directory: --dataset mnist:DIR")
        if not Path(directory).is_dir():
            raise argparse.ArgumentTypeError(f"mnist directory {directory!r} does not exist")
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(DATASETS)}")
