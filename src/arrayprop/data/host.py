"""Host side of training: what :func:`arrayprop.fit` does with host data before the device.

Checks (:func:`host_array`, :func:`check_finite`, :func:`check_class_labels`), the shuffling
Generator and its JSON-able state (:func:`shuffler`, :func:`rng_state`, :func:`rng_from_state`)
and :func:`gather_rows`, which makes one contiguous chunk for one device copy. NumPy only;
import these from :mod:`arrayprop.data`.
"""

from __future__ import annotations

import numpy as np

from arrayprop.data.transforms import Seed, _fmt_index
from arrayprop.errors import BackendMismatchError, LabelError, NonFiniteError

#: Rows per block when scanning host data for NaN / infinity (bounds the temporary memory).
CHECK_BLOCK_ROWS = 65536


def host_array(x: object, what: str) -> np.ndarray:
    """``x`` as a host NumPy array, without copying NumPy arrays (a memmap stays on disk).

    Raises
    ------
    arrayprop.errors.BackendMismatchError
        If ``x`` is an array of a device library (torch, cupy, jax, array-api-strict).
    """
    from arrayprop.backends import is_host

    if not is_host(x):
        mod = type(x).__module__.split(".")[0]
        raise BackendMismatchError(
            f"{what}: got a {mod}.{type(x).__name__}, which is neither host (NumPy) data nor an "
            "array of the model's backend; move it explicitly"
        )
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def check_finite(
    x: np.ndarray,
    what: str,
    *,
    block_rows: int = CHECK_BLOCK_ROWS,
    cast_to: tuple[str, float] | None = None,
    nonfinite_ok: bool = False,
) -> None:
    """Raise :class:`~arrayprop.errors.NonFiniteError` naming the first NaN / infinity in ``x``,
    or the first value that the cast to the model's dtype (``cast_to``) would make infinite.

    Scans ``block_rows`` rows at a time, so a memmap larger than memory is checked in one
    pass with a bounded temporary. Integer and boolean data are always finite.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, ...)
        The data.
    what : str
        How the message names ``x``, e.g. ``"fit: x"``.
    block_rows : int
        Rows per block of the scan.
    cast_to : (str, float), optional
        Name and largest finite value of the dtype ``x`` is about to be cast to (the model's):
        a value of larger magnitude would become ±inf in that cast. Looked for in the same pass,
        and only when ``x``'s dtype can hold such values, so data already in the model's dtype
        costs nothing more.
    nonfinite_ok : bool
        Let NaN and infinity through; look only for values the cast would make infinite.
    """
    limit = _cast_limit(x.dtype, cast_to)
    floating = x.dtype.kind in "fc"
    if limit is None and (nonfinite_ok or not floating):
        return
    for start in range(0, x.shape[0], block_rows):
        block = np.asarray(x[start : start + block_rows])
        if limit is None:
            bad = ~np.isfinite(block)
        else:
            # Two comparisons rather than abs(): masks of one byte per value, no float copy of
            # the block, and no wrap-around of abs(INT_MIN). ±inf lands in ``bad`` here.
            bad = block > limit
            bad |= block < -limit
            if floating:
                if nonfinite_ok:
                    bad &= np.isfinite(block)
                else:
                    bad |= np.isnan(block)
        if bad.any():
            pos = np.argwhere(bad)[0]
            value = block[tuple(pos)]
            pos[0] += start
            if limit is not None and np.isfinite(value):
                raise NonFiniteError(_overflow_message(what, value, _fmt_index(pos), cast_to))
            raise NonFiniteError(
                f"{what} contains {value} at index {_fmt_index(pos)}; NaN and infinity cannot be "
                "trained on (clean or impute the data first)"
            )


def _cast_limit(dtype: np.dtype, cast_to: tuple[str, float] | None) -> float | None:
    """The largest value of ``cast_to`` when ``dtype`` holds larger ones, else None."""
    if cast_to is None:
        return None
    if dtype.kind == "f":
        top = float(np.finfo(dtype).max)
    elif dtype.kind in "iu":
        top = float(np.iinfo(dtype).max)
    else:
        return None  # bool is 0/1; complex data is refused by the cast itself
    return cast_to[1] if top > cast_to[1] else None


def _overflow_message(what: str, value: object, index: str, cast_to: tuple[str, float]) -> str:
    name, largest = cast_to
    wider = " or use a float64 model" if name != "float64" else ""
    return (
        f"{what} contains {value} at index {index}, whose magnitude {abs(value)} exceeds "
        f"{largest:.8g}, the largest value of the model's dtype {name}: the cast to {name} "
        f"would make it {'-' if value < 0 else ''}inf. Scale the data (e.g. "
        f"arrayprop.data.standardize){wider}"
    )


def check_class_labels(y: np.ndarray, num_classes: int, what: str) -> None:
    """Raise :class:`~arrayprop.errors.LabelError` unless ``y`` holds integers in [0, k).

    The message names the first bad label, its index and the valid range.
    """
    if y.dtype.kind not in "iu":
        raise LabelError(
            f"{what}: class labels of shape {y.shape} must be integers 0..{num_classes - 1}, "
            f"got dtype {y.dtype} (pass one-hot rows of shape (n, {num_classes}) instead, or "
            "cast the labels)"
        )
    if y.size == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        index = int(np.flatnonzero(y == bad)[0])
        raise LabelError(
            f"{what}: label {bad} at index {index} is out of range for a model with "
            f"{num_classes} outputs (valid: 0..{num_classes - 1})"
        )


def shuffler(seed: Seed) -> np.random.Generator:
    """The host Generator :func:`arrayprop.fit` draws each epoch's permutation from."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def rng_state(rng: np.random.Generator) -> dict:
    """A JSON-able copy of a Generator's state (its big integers written as strings)."""
    return _stringify(rng.bit_generator.state)


def rng_from_state(state: dict) -> np.random.Generator:
    """The Generator whose state :func:`rng_state` wrote (draws continue exactly)."""
    state = _unstringify(state)
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
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


def gather_rows(x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """``x[rows]`` as one contiguous in-memory array, ready for one device copy.

    ``rows`` is an index array (a chunk of a shuffled order) or a slice. Reading a memmap this
    way touches only the rows of the chunk.
    """
    if isinstance(rows, slice):
        return np.array(x[rows], order="C")  # a copy in memory, also for a memmap
    return np.asarray(np.take(x, rows, axis=0))  # a plain ndarray, not a memmap subclass
