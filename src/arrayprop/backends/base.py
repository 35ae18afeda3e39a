"""The :class:`Backend` base: what every array-library adapter shares (see docs/backends.md).

A backend bundles an Array API namespace ``xp``, the device arrays live on and the default
floating dtype. Everything else in arrayprop creates arrays through it, with an explicit
``dtype=`` and ``device=``, and moves data between host and device only through
:meth:`Backend.asarray` and :meth:`Backend.to_host`. Nothing is ever copied between two devices
silently: an array of another library or device is an error
(:class:`~arrayprop.errors.BackendMismatchError`).

The base class holds the shared logic and a default for each per-library hook; one adapter per
library (``backends/numpy``, ``backends/cupy``, ``backends/torch``, ...) overrides the hooks
where its library differs. No array library but NumPy is imported here.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from arrayprop.backends.threads import limit_blas_threads
from arrayprop.errors import BackendMismatchError, BackendUnavailableError, DTypeError
from arrayprop.validation import check_finite

__all__ = [
    "DEVICE_ARRAY_MODULES",
    "FLOAT_DTYPES",
    "Backend",
    "check_cast_range",
    "describe_array",
    "device_of",
    "dtype_name_of",
    "host_zeros",
    "is_host",
]

#: The model dtypes a backend may default to (where its library has them).
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")

#: Top-level modules whose arrays live on a device (or are lazy): never host data.
DEVICE_ARRAY_MODULES = ("cupy", "torch", "jax", "jaxlib", "array_api_strict", "dask")

# (library name, str(device), str(dtype)) -> Backend: one object per combination, so that
# backends compare by identity and get_backend costs a dict look-up after the first call.
_CACHE: dict[tuple[str, str, str], Backend] = {}


@dataclass(frozen=True, eq=False, repr=False)
class Backend:
    """An array library, a device and a default float dtype.

    Build one with :func:`~arrayprop.get_backend`; do not construct it directly. Each library
    has a subclass (its *adapter*) that sets the class attributes below and overrides the hooks
    its library needs; the public interface is the same for all of them.

    Attributes
    ----------
    name : str
        One of :data:`~arrayprop.BACKENDS` (a class attribute of the adapter).
    xp : module
        The Array API namespace every portable module computes with.
    device : object
        The library's device object; every array this backend creates lives there.
    dtype : dtype
        The default floating dtype of models built on this backend.
    array_type : type
        The library's array class (``isinstance`` tells this backend's arrays apart).
    """

    #: The backend's name, as :func:`~arrayprop.get_backend` takes it.
    name: ClassVar[str] = ""
    #: The array library's import name (checked by ``arrayprop info`` without importing it).
    library: ClassVar[str] = ""
    #: The module of the library's Array API namespace (``array_api_compat.<lib>`` or its own).
    namespace_module: ClassVar[str] = ""
    #: What to install when the library is missing.
    install_hint: ClassVar[str] = ""
    #: Top-level module names of the library's array types (how :func:`backend_of` finds it).
    array_modules: ClassVar[tuple[str, ...]] = ()
    #: The module of this backend's fast kernels (see :mod:`arrayprop.kernels`), if any.
    fast_module: ClassVar[str | None] = None
    #: Whether float32 GEMMs can be switched to TF32 tensor cores (:meth:`set_tf32`).
    supports_tf32: ClassVar[bool] = False
    #: Whether the products run on NumPy's BLAS, whose threads ``fit`` may limit
    #: (:meth:`blas_threads_limited`).
    uses_numpy_blas: ClassVar[bool] = False

    xp: Any
    device: Any
    dtype: Any
    array_type: type

    # -- construction (class-level hooks) ---------------------------------------------------
    @classmethod
    def instance(cls, device: Any = None, dtype: Any = None) -> Backend:
        """The backend of this library on ``device`` with default float ``dtype`` (cached).

        ``device`` and ``dtype`` as for :func:`~arrayprop.get_backend`. Raises
        :class:`~arrayprop.errors.BackendUnavailableError` when the library or the device is
        missing, :class:`~arrayprop.errors.DTypeError` for a dtype the library lacks.
        """
        key = (cls.name, str(device), str(dtype))
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        xp = cls.import_namespace()
        dev = cls.resolve_device(xp, device)
        backend = cls(
            xp=xp,
            device=dev,
            dtype=cls.resolve_dtype(xp, dtype),
            array_type=cls.load_array_type(xp),
        )
        _CACHE[key] = backend
        return backend

    @classmethod
    def import_namespace(cls) -> ModuleType:
        """Import the library, then its Array API namespace; a missing install is a clear error."""
        try:
            importlib.import_module(cls.library)
            return importlib.import_module(cls.namespace_module)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {cls.name!r} is not installed ({exc}); install it with: "
                f"{cls.install_hint}"
            ) from exc

    @classmethod
    def resolve_device(cls, xp: ModuleType, device: Any) -> Any:
        """Turn a user's device (None, a string such as ``"cuda:1"``, or a device object) into
        the library's device object, checking that it exists.

        This default asks the namespace's ``__array_namespace_info__()``.
        """
        info = xp.__array_namespace_info__()
        if device is None:
            return info.default_device()
        for d in info.devices():
            if device == d or device == str(d) or f"Device('{device}')" in str(d):
                return d
        raise BackendUnavailableError(
            f"backend {cls.name!r}: no device {device!r}; available: "
            f"{[str(d) for d in info.devices()]}"
        )

    @classmethod
    def resolve_dtype(cls, xp: ModuleType, dtype: Any) -> Any:
        """The library's dtype for a model dtype given by name or as any library's dtype object.

        Raises :class:`~arrayprop.errors.DTypeError` for a non-float or unknown dtype and for one
        the library lacks (bfloat16 on NumPy).
        """
        if dtype is None:
            dtype = "float32"
        if not isinstance(dtype, str):
            # By name, so a dtype object of any library works (np.float64 for torch) and none is
            # compared with another library's dtype (array_api_strict warns on that).
            if dtype_name_of(dtype) not in FLOAT_DTYPES:
                raise DTypeError(f"unsupported model dtype {dtype!r}; choose one of {FLOAT_DTYPES}")
            dtype = dtype_name_of(dtype)
        if dtype not in FLOAT_DTYPES:
            raise DTypeError(f"unsupported model dtype {dtype!r}; choose one of {FLOAT_DTYPES}")
        resolved = cls.library_dtype(xp, dtype)
        if resolved is None:
            raise DTypeError(f"backend {cls.name!r} has no dtype {dtype!r}")
        return resolved

    @classmethod
    def library_dtype(cls, xp: ModuleType, wanted: str) -> Any:
        """The library's dtype object named ``wanted`` (one of :data:`FLOAT_DTYPES`), or None."""
        return getattr(xp, wanted, None)

    @classmethod
    def load_array_type(cls, xp: ModuleType) -> type:
        """The library's array class (this default: the type of an array ``xp`` makes)."""
        return type(xp.asarray(0))

    @classmethod
    def of_array(cls, x: Any, dtype: Any = None) -> Backend | None:
        """The backend ``x`` belongs to when it is an array of this library, else None."""
        if type(x).__module__.split(".")[0] not in cls.array_modules:
            return None
        return cls.instance(_array_device(x), dtype)

    @classmethod
    def list_devices(cls) -> list[str]:
        """Names of the devices this library can use here (for ``arrayprop info``)."""
        return [str(cls.instance().device)]

    # -- creation and transfer ---------------------------------------------------------------
    def asarray(
        self, x: Any, dtype: Any = None, *, what: str = "data", check_range: bool = True
    ) -> Any:
        """Put ``x`` on this backend's device.

        Host data (NumPy arrays, lists, scalars) is copied to the device; floating data takes
        ``dtype`` (default: the backend's dtype), integer and boolean data keep their kind.
        An array of this backend on this device is returned as is (cast if ``dtype`` differs).
        An array of another library or device raises :class:`BackendMismatchError`: arrays
        never move between devices behind the user's back. Host float data with finite values
        that the cast to a narrower float dtype would make infinite (1e39 into float32) raises
        :class:`~arrayprop.errors.NonFiniteError` naming ``what``, the value and the dtype
        (``check_range=False``: the caller has checked, e.g. ``fit`` once before training).
        The result has ``x``'s shape.
        """
        if isinstance(x, self.array_type):
            return self.adopt(x, dtype, what=what, check_range=check_range)
        return self.from_host(x, dtype, what=what, check_range=check_range)

    def adopt(
        self, x: Any, dtype: Any = None, *, what: str = "data", check_range: bool = True
    ) -> Any:
        """:meth:`asarray` of an array of this library: checked to be on this backend's device,
        returned as is or cast (floating data to the backend's dtype, as for host data)."""
        self.check(x)
        xp = self.xp
        if not _is_real(xp, x):  # complex: a cast would keep the real part without a word
            raise DTypeError(f"{self}: cannot use data of dtype {x.dtype} (need real numbers)")
        target = dtype if dtype is not None else (self.dtype if _is_float(xp, x) else None)
        if target is not None and x.dtype != target:
            x = xp.astype(x, target)
        return x

    def from_host(
        self, x: Any, dtype: Any = None, *, what: str = "data", check_range: bool = True
    ) -> Any:
        """Copy host data ``x`` (any shape) to the device, as :meth:`asarray` does.

        Raises :class:`BackendMismatchError` when ``x`` is an array of a device library.
        """
        if not is_host(x):
            raise BackendMismatchError(
                f"{self}: got an array of {describe_array(x)}; convert it explicitly (to_host, "
                "then asarray) or build the model on that backend"
            )
        host = np.asarray(x)
        if host.dtype.kind not in "biuf":
            raise DTypeError(f"{self}: cannot use data of dtype {host.dtype} (need numbers)")
        if dtype is None and host.dtype.kind == "f":
            dtype = self.dtype
        if dtype is not None and _numpy_dtype(dtype) is not None:
            # Cast on the host, so the device receives the final dtype in one copy.
            if check_range:
                check_cast_range(host, _numpy_dtype(dtype), what)
            host = host.astype(_numpy_dtype(dtype), copy=False)
            dtype = None
        if not host.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into shape (1,))
            host = np.ascontiguousarray(host)
        out = self.device_put(host)
        # A dtype NumPy lacks (bfloat16) is made on the device, from the host's float data.
        return out if dtype is None else self.xp.astype(out, dtype)

    def device_put(self, host: np.ndarray) -> Any:
        """Copy a C-contiguous host array, already of its final dtype, to the device.

        The hook behind :meth:`from_host`; this default is ``xp.asarray(host, device=...)``.
        """
        return self.xp.asarray(host, device=self.device)

    def to_host(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array of the same shape (bfloat16
        becomes float32). Host data is returned as a NumPy array."""
        if isinstance(x, np.ndarray | np.generic | int | float):
            return np.asarray(x)
        self.check(x)
        return self.device_get(x)

    def device_get(self, x: Any) -> np.ndarray:
        """Copy an array of this backend (already checked) to the host: the hook behind
        :meth:`to_host`. This default is ``np.asarray``."""
        return np.asarray(x)

    def zeros(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Zeros of ``shape`` on this backend's device (default dtype: the backend's)."""
        return self.xp.zeros(
            shape, dtype=self.dtype if dtype is None else dtype, device=self.device
        )

    def scalar(self, value: float, dtype: Any = None) -> Any:
        """A 0-d array holding ``value``, on this backend's device."""
        return self.xp.asarray(
            value, dtype=self.dtype if dtype is None else dtype, device=self.device
        )

    # -- checks ---------------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this library on this backend's device."""
        return isinstance(x, self.array_type) and self.same_device(x)

    def check(self, x: Any, what: str = "array") -> None:
        """Raise :class:`BackendMismatchError` unless ``x`` lives on this backend and device."""
        if not isinstance(x, self.array_type):
            raise BackendMismatchError(
                f"{what}: expected an array of {self}, got {describe_array(x)}"
            )
        if not self.same_device(x):
            raise BackendMismatchError(
                f"{what}: expected an array on device {self.device!s} of {self.name}, got one on "
                f"{device_of(x)!s}; move it explicitly"
            )

    def same_device(self, x: Any) -> bool:
        """Whether ``x``, an array of this library, lives on this backend's device."""
        return x.device == self.device

    def with_dtype(self, dtype: Any) -> Backend:
        """The same library and device with another default float dtype."""
        return type(self).instance(self.device, dtype)

    # -- execution ------------------------------------------------------------------------------
    def sync(self, x: Any = None) -> None:
        """Block until queued device work is finished (a no-op on the CPU backends).

        For JAX pass the array whose computation should finish.
        """

    def errstate(self, **settings: str) -> AbstractContextManager[Any]:
        """A context with NumPy-style floating-point error ``settings`` (``over="ignore"``);
        a no-op for libraries that never warn about inf and NaN."""
        return contextlib.nullcontext()

    def float_errors_ignored(self) -> AbstractContextManager[Any]:
        """A context in which overflow / invalid-value / divide warnings are off.

        For code that checks the results for non-finite values itself, like ``fit``.
        """
        return self.errstate(over="ignore", invalid="ignore", divide="ignore")

    def expect_overflow(self) -> AbstractContextManager[Any]:
        """A context in which inf and NaN are expected results (loss scaling probes for
        overflow), so no overflow / invalid-value warning is raised."""
        return self.errstate(over="ignore", invalid="ignore")

    def blas_threads_limited(self, threads: int | None) -> AbstractContextManager[Any]:
        """A context in which NumPy's BLAS uses at most ``threads`` threads, restored on exit;
        a no-op when ``threads`` is None or the backend computes elsewhere (its own pools)."""
        if threads is None or not self.uses_numpy_blas:
            return contextlib.nullcontext()
        return limit_blas_threads(threads)

    @property
    def on_host(self) -> bool:
        """True when arrays live in host memory, so reading a value back costs no device sync."""
        return False

    @property
    def dtype_name(self) -> str:
        """The default dtype's name: ``"float32"``, ``"bfloat16"``, ..."""
        return dtype_name_of(self.dtype)

    @functools.cached_property
    def fast(self) -> ModuleType | None:
        """This backend's fast-kernel module, or None (no such module, or it does not import).

        :mod:`arrayprop.kernels` dispatches to it unless portable kernels are selected. It is
        imported on first use: NumPy's binds OpenBLAS, CuPy's imports CuPy.
        """
        if self.fast_module is None:
            return None
        try:
            return importlib.import_module(self.fast_module)
        except ImportError:  # its library is missing: the portable kernels take over
            return None

    def graph_capture(self) -> Any:
        """The stream-capture mechanism behind :class:`~arrayprop.CudaGraphStep`.

        Raises :class:`~arrayprop.errors.BackendUnavailableError` on a backend without CUDA
        graphs (all but ``cupy``).
        """
        raise BackendUnavailableError(f"CUDA graphs need the 'cupy' backend, not {self}")

    # -- TF32 (process-wide library switches, so class-level) ---------------------------------
    @classmethod
    def tf32_setting(cls) -> Any:
        """The library's raw TF32 setting, which :meth:`restore_tf32` puts back exactly."""
        raise cls._no_tf32()

    @classmethod
    def set_tf32(cls, enabled: bool) -> bool:
        """Allow (or forbid) TF32 tensor cores for float32 GEMMs; returns whether it was on."""
        raise cls._no_tf32()

    @classmethod
    def restore_tf32(cls, setting: Any) -> None:
        """Put back a setting read with :meth:`tf32_setting`."""
        raise cls._no_tf32()

    @classmethod
    def _no_tf32(cls) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend {cls.name!r} has no TF32 mode (a CUDA tensor-core mode for float32 GEMMs)"
        )

    # -- display ------------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"Backend({self.name}, device={self.device!s}, dtype={self.dtype_name})"

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r}, dtype={self.dtype!r})"


# -- helpers shared with the adapters and the host-data modules --------------------------------


def dtype_name_of(dtype: Any) -> str:
    """The name of any library's dtype object (``torch.bfloat16`` -> ``"bfloat16"``)."""
    text = str(dtype)
    for name in ("bfloat16", "float16", "float32", "float64", "int64", "int32", "bool"):
        if name in text:
            return name
    return text


def _numpy_dtype(dtype: Any) -> np.dtype | None:
    """The NumPy dtype of the same name, None where NumPy has none (bfloat16)."""
    name = dtype_name_of(dtype)
    return np.dtype(name) if name in ("float16", "float32", "float64", "int64", "int32") else None


def check_cast_range(host: np.ndarray, target: Any, what: str) -> None:
    """Refuse finite host floats that a cast to the narrower float ``target`` makes ±inf.

    The scan (:func:`~arrayprop.validation.check_finite`, which decides from the two dtypes
    whether one is needed) runs only when the cast narrows: float64 data for a float32 model.
    NaN and inf pass: they are the data's own, and the training entry points refuse them
    themselves.
    """
    target = np.dtype(target)
    if host.dtype.kind != "f" or target.kind != "f" or host.dtype.itemsize <= target.itemsize:
        return
    # (atleast_1d: the scan goes by rows, and a 0-d array has none.)
    check_finite(
        np.atleast_1d(host), what, cast_to=(target.name, float(np.finfo(target).max)),
        nonfinite_ok=True,
    )  # fmt: skip


_IS_FLOAT: dict[Any, bool] = {}


def _is_float(xp: ModuleType, x: Any) -> bool:
    # Called on every step (asarray of a batch): xp.isdtype is slow on NumPy (~1.3 µs), so the
    # answer is remembered per dtype. The key leads with the dtype's type, so that dtypes of two
    # libraries are never compared with each other (array_api_strict warns when they are).
    dtype = x.dtype
    key = (type(dtype), dtype)
    try:
        return _IS_FLOAT[key]
    except KeyError:
        answer = _IS_FLOAT[key] = bool(xp.isdtype(dtype, "real floating"))
        return answer
    except TypeError:  # an unhashable dtype object
        return bool(xp.isdtype(dtype, "real floating"))


_IS_REAL: dict[Any, bool] = {}


def _is_real(xp: ModuleType, x: Any) -> bool:
    """Bool, integer or real floating (not complex), remembered per dtype as :func:`_is_float`."""
    dtype = x.dtype
    key = (type(dtype), dtype)
    try:
        return _IS_REAL[key]
    except KeyError:
        answer = _IS_REAL[key] = bool(xp.isdtype(dtype, ("bool", "integral", "real floating")))
        return answer
    except TypeError:  # an unhashable dtype object
        return bool(xp.isdtype(dtype, ("bool", "integral", "real floating")))


def is_host(x: Any) -> bool:
    """True for host data: NumPy arrays and scalars, Python numbers and sequences, and any
    object that is not an array of a device library (:data:`DEVICE_ARRAY_MODULES`)."""
    if isinstance(x, np.ndarray | np.generic | int | float | bool | list | tuple):
        return True
    return type(x).__module__.split(".")[0] not in DEVICE_ARRAY_MODULES


def describe_array(x: Any) -> str:
    """``"torch.Tensor on cuda:0"``: an object's library, type and device, for messages."""
    mod = type(x).__module__.split(".")[0]
    dev = device_of(x)
    return f"{mod}.{type(x).__name__}" + (f" on {dev}" if dev is not None else "")


def _array_device(x: Any) -> Any:
    # array_api_compat is imported on first use, so that `import arrayprop` does not load it.
    import array_api_compat

    return array_api_compat.device(x)


def device_of(x: Any) -> Any:
    """The device an array lives on, or None when ``x`` has none that can be told."""
    try:
        return _array_device(x)
    except Exception:
        return None


def host_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float64 zeros of ``shape`` on the host (the ``zeros`` initialiser)."""
    return np.zeros(shape)
