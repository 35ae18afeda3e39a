"""Exception classes raised by arrayprop."""


class ArrayPropError(Exception):
    """Base class of arrayprop's own exceptions."""


class ShapeError(ArrayPropError, ValueError):
    """An array has a shape incompatible with the operation."""


class DTypeError(ArrayPropError, TypeError):
    """An array has a dtype that the operation does not accept."""


class BackendMismatchError(ArrayPropError, ValueError):
    """Arrays from different array backends (or devices) were mixed."""


class BackendUnavailableError(ArrayPropError, ImportError):
    """A requested array backend is not installed or cannot be used."""


class LabelError(ArrayPropError, ValueError):
    """Class labels are negative, out of range or not integers."""


class NonFiniteError(ArrayPropError, ValueError):
    """An array contains NaN or infinite values where finite ones are required."""


class DataError(ArrayPropError, ValueError):
    """A data file or data set is missing pieces, malformed or inconsistent."""


class CheckpointError(ArrayPropError, ValueError):
    """A checkpoint file is malformed or does not match the model."""


class DivergenceError(ArrayPropError, RuntimeError):
    """Training diverged (for example the loss became NaN or infinite)."""
