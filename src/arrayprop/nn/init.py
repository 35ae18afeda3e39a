"""Weight initialisers, drawn on the host from a NumPy Generator.

Drawing on the host in float64 and only then moving to the device (with one cast) is what makes
one seed give bit-identical initial weights on every backend. The generator comes from
:func:`arrayprop.random.host_rng`; each initialiser is ``f(shape, rng) -> host array`` and only
calls the generator's methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from arrayprop.backends import host_zeros
from arrayprop.errors import ShapeError

__all__ = [
    "INITIALIZERS",
    "draw",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "normal",
    "zeros",
]


def he_normal(shape: tuple[int, int], rng: Any) -> Any:
    """N(0, 2 / fan_in): keeps the variance of ReLU activations constant across layers."""
    return rng.normal(0.0, math.sqrt(2.0 / shape[0]), size=shape)


def he_uniform(shape: tuple[int, int], rng: Any) -> Any:
    """U(−√(6 / fan_in), √(6 / fan_in))."""
    limit = math.sqrt(6.0 / shape[0])
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(shape: tuple[int, int], rng: Any) -> Any:
    """N(0, 2 / (fan_in + fan_out)): the Glorot & Bengio (2010) choice for sigmoid / tanh."""
    return rng.normal(0.0, math.sqrt(2.0 / (shape[0] + shape[1])), size=shape)


def glorot_uniform(shape: tuple[int, int], rng: Any) -> Any:
    """U(−√(6 / (fan_in + fan_out)), +√(6 / (fan_in + fan_out)))."""
    limit = math.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape)


def normal(std: float = 0.01) -> Callable[[tuple[int, ...], Any], Any]:
    """An initialiser drawing from N(0, std²)."""
    if not std > 0:
        raise ValueError(f"normal(std): std must be positive, got {std!r}")

    def draw(shape: tuple[int, ...], rng: Any) -> Any:
        return rng.normal(0.0, std, size=shape)

    draw.__name__ = f"normal({std})"
    return draw


def zeros(shape: tuple[int, ...], rng: Any = None) -> Any:
    """All zeros. Every hidden unit then stays identical forever (the symmetry problem)."""
    return host_zeros(shape)


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


def draw(init: str | Callable, shape: tuple[int, ...], rng: Any, whose: str) -> Any:
    """The initial weights ``init(shape, rng)``, checked to have exactly ``shape``.

    A user's initialiser returning another shape (the transpose, a flat vector) would otherwise
    be broadcast, reshaped or kept as a layer of the wrong width. Raises
    :class:`~arrayprop.errors.ShapeError` naming ``whose`` (the layer), the expected and the
    returned shape.
    """
    w = get_initializer(init)(shape, rng)
    got = tuple(getattr(w, "shape", ()))
    if got != tuple(shape):
        raise ShapeError(
            f"{whose}: initializer {getattr(init, '__name__', init)!r} returned an array of "
            f"shape {got}; expected {tuple(shape)}"
        )
    return w
