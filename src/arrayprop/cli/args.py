"""Argument types of the ``arrayprop`` command line, and :class:`UsageError`.

An argument type turns one command-line string into a value or raises
``argparse.ArgumentTypeError``, which argparse reports as a one-line usage error.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

__all__ = [
    "DATASETS",
    "DTYPES",
    "UsageError",
    "dataset_spec",
    "model_spec",
    "non_negative_float",
    "positive",
]

#: What ``--dataset`` accepts.
DATASETS = ("digits", "spirals", "xor", "mnist:DIR")
#: What ``--dtype`` accepts.
DTYPES = ("float32", "float64", "float16", "bfloat16")


class UsageError(Exception):
    """A bad command line found after parsing (reported like an argparse error)."""


def positive(kind: type) -> Any:
    """An argument type for a finite ``kind`` (int or float) > 0."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative_float(text: str) -> float:
    """An argument type for a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


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
    """``digits``, ``spirals``, ``xor`` or ``mnist:DIR`` with an existing DIR."""
    if text in ("digits", "spirals", "xor"):
        return text
    if text.startswith("mnist:"):
        directory = text[len("mnist:") :]
        if not directory:
            raise argparse.ArgumentTypeError("mnist needs a directory: --dataset mnist:DIR")
        if not Path(directory).is_dir():
            raise argparse.ArgumentTypeError(f"mnist directory {directory!r} does not exist")
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(DATASETS)}")
