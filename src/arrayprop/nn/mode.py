"""Evaluation mode for a block of code: :func:`evaluating`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["evaluating"]


@contextmanager
def evaluating(layer: Any) -> Iterator[Any]:
    """Within the block ``layer`` (and every layer inside it) is in evaluation mode; each gets
    its own mode back afterwards, and what the forward passes kept is dropped."""
    modes = [(inner, inner.training) for _, inner in layer.named_layers()]
    layer.eval()
    try:
        yield layer
    finally:
        for inner, mode in modes:
            inner.training = mode
        for inner, _ in modes:
            inner.clear_cache()
