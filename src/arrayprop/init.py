"""Weight initialisers, drawn on the host from a NumPy Generator.

Drawing on the host in float64 and only then moving to the device (with one cast) is what makes
one seed give bit-identical initial weights on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "INITIALIZERS",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "make_rng",
    "normal",
    "zeros",
]


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A host Generator from a seed (an existing Generator is used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def he_normal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """N(0, 2 / fan_in): keeps the variance of ReLU activations constant across layers."""
    return rng.normal(0.0, math.sqrt(2.0 / shape[0]), size=shape)


def he_uniform(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """U(−√(6 / fan_in), √(6 / fan_in))."""
    limit = math.sqrt(6.0 / shape[0])
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out)): the Glorot & Bengio (2010) choice for sigmoid / tanh."""
    return rng.normal(0.0, math.sqrt(2.0 / (shape[0] + shape[1])), size=shape)


def glorot_uniform(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """U(−√(6 / (fan_in + fan_out)), +√(6 / (fan_in + fan_out)))."""
    limit = math.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape)


def normal(std: float = 0.01) -> Callable[[tuple[int, ...], np.random.Generator], np.ndarray]:
    """An initialiser drawing from N(0, std²)."""
    if not std > 0:
        raise ValueError(f"normal(std): std must be positive, got {std!r}")

    def draw(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, std, size=shape)

    draw.__name__ = f"normal({std})"
    return draw


def zeros(shape: tuple[int, ...], rng: np.random.Generator | None = None) -> np.ndarray:
    """All zeros. Every hidden unit then stays identical forever (the symmetry problem)."""
    return np.zeros(shape)


INITIALIZERS: dict[str, Callable] = {
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot": glorot_normal,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier": glorot_normal,
    "normal": normal(0.01),
    "zeros": zeros,
}


def get_initializer(init: str | Callable) -> Callable:
    """Look an initialiser up by name, or pass a callable ``(shape, rng) -> ndarray`` through."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except KeyError:
        raise ValueError(
            f"unknown initializer {init!r}; valid: {', '.join(sorted(INITIALIZERS))}"
        ) from None
