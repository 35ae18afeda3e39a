"""Exceptions raised by arrayprop.

Every error the library raises on bad input is one of these (each also derives from the matching
builtin, so ``except ValueError`` keeps working), and its message names the thing, what was
expected and what was found.
"""


class ArrayPropError(Exception):
    """Base class of arrayprop's own exceptions."""


class ShapeError(ArrayPropError, ValueError):
    """An array has the wrong shape or number of dimensions."""


class DTypeError(ArrayPropError, TypeError):
    """An array has a dtype the operation cannot use, or one the backend lacks."""


class BackendMismatchError(ArrayPropError, ValueError):
    """Arrays from different array libraries or devices were mixed in one call."""


class BackendUnavailableError(ArrayPropError, ImportError):
    """A requested backend is not installed or has no usable device."""


class LabelError(ArrayPropError, ValueError):
    """Class labels are out of range or not integers."""


class NonFiniteError(ArrayPropError, ValueError):
    """Input data contains NaN or infinity, or values too large for the model's dtype."""


class DataError(ArrayPropError, ValueError):
    """A data file or data set is missing pieces, malformed or empty."""


class CheckpointError(ArrayPropError, ValueError):
    """A checkpoint file is truncated, corrupted, foreign or of an unknown format version."""


class DivergenceError(ArrayPropError, RuntimeError):
    """Training produced a non-finite loss or gradient."""


class DistributedError(ArrayPropError, RuntimeError):
    """The ranks of a distributed run disagree (models, settings) or cannot combine a loss."""
