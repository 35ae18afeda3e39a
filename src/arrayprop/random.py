"""Host randomness: the one constructor of arrayprop's NumPy Generators, and their saved state.

Weights, shuffles, splits and synthetic data are all drawn on the host from a Generator made by
:func:`host_rng` and only then moved to a device, so one seed gives the same numbers on every
backend. :func:`rng_state` / :func:`rng_from_state` carry a Generator through a JSON checkpoint
header (``fit(checkpoint=...)`` resumes its shuffling exactly). NumPy only.
"""

from __future__ import annotations

import numbers
import zlib
from contextvars import ContextVar

import numpy as np

__all__ = [
    "BIT_GENERATORS",
    "Seed",
    "current_step",
    "host_rng",
    "is_order",
    "rng_from_state",
    "rng_state",
    "step_rng",
    "stepping",
    "stream_seed",
]

#: What ``seed=`` arguments take: an int, a Generator (used as is) or None (fresh entropy).
Seed = int | np.random.Generator | None


def host_rng(seed: Seed) -> np.random.Generator:
    """The host NumPy Generator for ``seed`` (a Generator is returned as is, not copied).

    Parameters
    ----------
    seed : int, numpy.random.Generator or None

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    ValueError
        For anything else: a negative int, a bool, a float, a string.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not (
        isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0
    ):
        # NumPy's own errors ("expected non-negative integer") would not say which argument.
        raise ValueError(
            f"seed must be an int >= 0, a numpy.random.Generator or None, got {seed!r}"
        )
    return np.random.default_rng(int(seed) if seed is not None else None)


#: (seed, step) of the training step running now, set by ``train_step`` and ``fit``.
_STEP: ContextVar[tuple[int, int] | None] = ContextVar("arrayprop_step", default=None)


def stream_seed(seed: Seed) -> int:
    """The root of the per-step random stream for a training ``seed``: the int itself, else 0
    (a Generator or None gives the same stream every run; pass an int to choose another)."""
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0


class stepping:
    """Within the block, layers draw the random numbers of training step ``step`` (counted by
    the optimizer, so a resumed run continues the stream exactly) of the stream ``seed``.

    A plain class rather than a generator context: it runs on every training step.
    """

    __slots__ = ("key", "token")

    def __init__(self, seed: int, step: int) -> None:
        self.key = (seed, step)

    def __enter__(self) -> None:
        self.token = _STEP.set(self.key)

    def __exit__(self, *exc: object) -> None:
        _STEP.reset(self.token)


def current_step() -> tuple[int, int] | None:
    """(seed, step) of the running training step, or None outside one."""
    return _STEP.get()


def step_rng(seed: int, step: int, name: str) -> np.random.Generator:
    """The host Generator of the layer at dotted path ``name`` for training step ``step``:
    the same numbers for the same (seed, step, name) on every backend and every run."""
    return np.random.default_rng([seed, step, zlib.crc32(name.encode())])


def rng_state(rng: np.random.Generator) -> dict:
    """A JSON-able copy of a Generator's state (its big integers written as strings)."""
    return _stringify(rng.bit_generator.state)


#: The bit generators :func:`rng_from_state` rebuilds: NumPy's, and nothing else it could be
#: asked to call (``np.random.seed`` would reseed the global state).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def rng_from_state(state: dict) -> np.random.Generator:
    """The Generator whose state :func:`rng_state` wrote (draws continue exactly).

    Raises
    ------
    ValueError
        If ``state`` is not such a state: not a dict, a ``bit_generator`` other than those of
        :data:`BIT_GENERATORS`, or contents that generator refuses. Nothing global is touched.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        got = repr(name) if isinstance(state, dict) else f"a {type(state).__name__}"
        raise ValueError(
            f"rng state: bit_generator must be one of {', '.join(BIT_GENERATORS)}, got {got}"
        )
    try:
        bit_generator = getattr(np.random, name)()
        bit_generator.state = _unstringify(state)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(
            f"rng state: not a valid {name} state ({type(exc).__name__}: {exc})"
        ) from None
    return np.random.Generator(bit_generator)


def _stringify(value: object) -> object:
    """Integers as ``"int:<digits>"`` (JSON readers may round big ones), arrays tagged."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"ndarray": value.dtype.str, "values": [_stringify(v) for v in value.tolist()]}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"int:{int(value)}"
    return value


def _unstringify(value: object) -> object:
    if isinstance(value, dict):
        if set(value) == {"ndarray", "values"}:
            values = [_unstringify(v) for v in value["values"]]
            return np.asarray(values, dtype=np.dtype(value["ndarray"]))
        return {k: _unstringify(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("int:"):
        return int(value[4:])
    return value


def is_order(order: np.ndarray, n: int) -> bool:
    """Whether ``order`` is an order of ``n`` samples: ``n`` integers, each of 0..n-1 once (what
    ``Generator.permutation(n)`` draws)."""
    return (
        order.dtype.kind in "iu"
        and order.shape == (n,)
        and bool(np.array_equal(np.sort(order), np.arange(n)))
    )
