"""The backend layer: the one module (with ``kernels/``) that names array libraries.

A :class:`Backend` bundles an Array API namespace ``xp`` (from ``array_api_compat`` where the
library needs a wrapper), the device arrays live on and the default floating dtype. Everything
else in arrayprop creates arrays through it, with an explicit ``dtype=`` and ``device=``, and
moves data between host and device only through :meth:`Backend.asarray` and
:meth:`Backend.to_host`. Nothing is ever copied between two devices silently: an array from
another library or device is an error (:class:`~arrayprop.errors.BackendMismatchError`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arrayprop.errors import BackendMismatchError, BackendUnavailableError, DTypeError
from arrayprop.validation import check_finite

__all__ = [
    "BACKENDS",
    "Backend",
    "backend_of",
    "describe_backends",
    "get_backend",
    "host_zeros",
]

#: Backend names in the order ``arrayprop info`` lists them.
BACKENDS = ("numpy", "cupy", "torch", "jax", "array_api_strict")

_INSTALL_HINT = {
    "numpy": "pip install numpy",
    "cupy": 'pip install "arrayprop[cuda12]"  (or arrayprop[cuda13] for CUDA 13)',
    "torch": 'pip install "arrayprop[torch]"',
    "jax": 'pip install "arrayprop[jax]"',
    "array_api_strict": "pip install array-api-strict",
}

_FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def _import(name: str):
    """Import an optional library, turning a missing install into a clear error."""
    modules = {
        "numpy": "array_api_compat.numpy",
        "cupy": "cupy",
        "torch": "torch",
        "jax": "jax",
        "array_api_strict": "array_api_strict",
    }
    try:
        return importlib.import_module(modules[name])
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} is not installed ({exc}); install it with: {_INSTALL_HINT[name]}"
        ) from exc


def _namespace(name: str):
    """Return the Array API namespace for a backend name (imports lazily)."""
    _import(name)
    if name == "numpy":
        import array_api_compat.numpy as xp
    elif name == "cupy":
        import array_api_compat.cupy as xp
    elif name == "torch":
        import array_api_compat.torch as xp
    elif name == "jax":
        import jax.numpy as xp
    else:
        import array_api_strict as xp
    return xp


def _array_type(name: str) -> type:
    if name == "numpy":
        return np.ndarray
    if name == "cupy":
        import cupy

        return cupy.ndarray
    if name == "torch":
        import torch

        return torch.Tensor
    if name == "jax":
        import jax

        return jax.Array
    import array_api_strict

    return type(array_api_strict.asarray(0))


def _resolve_device(name: str, xp, device: Any):
    """Turn a user's device (None, a string such as ``"cuda:1"``, or a device object) into the
    library's device object, checking that it exists."""
    if name == "cupy":
        import cupy

        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver missing or broken
            raise BackendUnavailableError(
                f"backend 'cupy' is installed but no CUDA device is usable ({exc})"
            ) from exc
        if count == 0:
            raise BackendUnavailableError("backend 'cupy' is installed but found no CUDA device")
        if device is None:
            return cupy.cuda.Device()
        index = device.id if isinstance(device, cupy.cuda.Device) else _cuda_index(device)
        if not 0 <= index < count:
            raise BackendUnavailableError(
                f"backend 'cupy': device {device!r} does not exist ({count} CUDA device(s) found)"
            )
        return cupy.cuda.Device(index)
    if name == "torch":
        import torch

        dev = torch.device("cpu" if device is None else device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailableError(
                    "backend 'torch': device 'cuda' requested but torch.cuda.is_available() is "
                    "False (a CPU-only build, or no visible GPU)"
                )
            dev = torch.device(
                "cuda", torch.cuda.current_device() if dev.index is None else dev.index
            )
        return dev
    if name == "jax":
        import jax

        if device is None:
            return jax.devices()[0]
        if not isinstance(device, str):
            return device
        for d in jax.devices():
            if device in (str(d), d.platform, f"{d.platform}:{d.id}"):
                return d
        raise BackendUnavailableError(
            f"backend 'jax': no device {device!r}; available: {[str(d) for d in jax.devices()]}"
        )
    info = xp.__array_namespace_info__()
    if device is None:
        return info.default_device()
    for d in info.devices():
        if device == d or device == str(d) or f"Device('{device}')" in str(d):
            return d
    raise BackendUnavailableError(
        f"backend {name!r}: no device {device!r}; available: {[str(d) for d in info.devices()]}"
    )


def _cuda_index(device: Any) -> int:
    if isinstance(device, int):
        return device
    text = str(device)
    if text in ("cuda", "gpu"):
        return 0
    for prefix in ("cuda:", "gpu:"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return int(text[len(prefix) :])
    raise BackendUnavailableError(f"backend 'cupy': cannot parse device {device!r} (use 'cuda:N')")


def _resolve_dtype(name: str, xp, dtype: Any):
    if dtype is None:
        dtype = "float32"
    if not isinstance(dtype, str):
        # By name, so a dtype object of any library works (np.float64 for torch) and none is
        # compared with another library's dtype (array_api_strict warns on that).
        if _dtype_name(dtype) not in _FLOAT_DTYPES:
            raise DTypeError(f"unsupported model dtype {dtype!r}; choose one of {_FLOAT_DTYPES}")
        dtype = _dtype_name(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise DTypeError(f"unsupported model dtype {dtype!r}; choose one of {_FLOAT_DTYPES}")
    if name == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    if name == "jax" and dtype == "bfloat16":
        return xp.bfloat16
    if name == "torch" and dtype == "bfloat16":
        import torch

        return torch.bfloat16
    resolved = getattr(xp, dtype, None)
    if resolved is None:
        raise DTypeError(f"backend {name!r} has no dtype {dtype!r}")
    return resolved


@dataclass(frozen=True, eq=False)
class Backend:
    """An array library, a device and a default float dtype.

    Build one with :func:`get_backend`; do not construct it directly.

    Attributes
    ----------
    name : str
        One of :data:`BACKENDS`.
    xp : module
        The Array API namespace every portable module computes with.
    device : object
        The library's device object; every array this backend creates lives there.
    dtype : dtype
        The default floating dtype of models built on this backend.
    """

    name: str
    xp: Any = field(repr=False)
    device: Any
    dtype: Any
    array_type: type = field(repr=False)

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
        """
        xp = self.xp
        if isinstance(x, self.array_type) and (self.name != "numpy" or type(x) is np.ndarray):
            self.check(x)
            if self.name == "numpy" and x.dtype.kind not in "biuf":
                raise DTypeError(f"{self}: cannot use data of dtype {x.dtype} (need numbers)")
            target = dtype if dtype is not None else (self.dtype if _is_float(xp, x) else None)
            if target is not None and x.dtype != target:
                if self.name == "numpy" and check_range:
                    _check_cast_range(x, target, what)
                x = xp.astype(x, target)
            return x
        if not _is_host(x):
            raise BackendMismatchError(
                f"{self}: got an array of {_describe(x)}; convert it explicitly (to_host, then "
                "asarray) or build the model on that backend"
            )
        host = np.asarray(x)
        if host.dtype.kind not in "biuf":
            raise DTypeError(f"{self}: cannot use data of dtype {host.dtype} (need numbers)")
        if dtype is None and host.dtype.kind == "f":
            dtype = self.dtype
        if dtype is not None and _numpy_dtype(dtype) is not None:
            # Cast on the host, so the device receives the final dtype in one copy.
            if check_range:
                _check_cast_range(host, _numpy_dtype(dtype), what)
            host = host.astype(_numpy_dtype(dtype), copy=False)
            dtype = None
        if not host.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into shape (1,))
            host = np.ascontiguousarray(host)
        if self.name == "numpy":
            out = host
        elif self.name == "torch":
            import torch

            if not host.flags.writeable:
                host = host.copy()  # torch tensors cannot alias read-only memory (a memmap "r")
            out = torch.from_numpy(host).to(self.device)
        elif self.name == "cupy":
            with self.device:
                out = xp.asarray(host)
        else:
            out = xp.asarray(host, device=self.device)
        return out if dtype is None else xp.astype(out, dtype)

    def to_host(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array (bfloat16 becomes float32)."""
        if isinstance(x, np.ndarray | np.generic | int | float):
            return np.asarray(x)
        self.check(x)
        if self.name == "cupy":
            return x.get()
        if self.name == "torch":
            x = x.detach()
            if str(x.dtype) == "torch.bfloat16":
                x = x.float()
            return x.cpu().numpy()
        if self.name == "jax":
            # ml_dtypes' bfloat16 is no NumPy float kind; hand the host float32, as for torch.
            return np.asarray(x.astype("float32") if "bfloat16" in str(x.dtype) else x)
        return np.from_dlpack(x) if self.name == "array_api_strict" else np.asarray(x)

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
        if not isinstance(x, self.array_type):
            return False
        return self.name == "numpy" or _same_device(self, x)

    def check(self, x: Any, what: str = "array") -> None:
        """Raise :class:`BackendMismatchError` unless ``x`` lives on this backend and device."""
        if not isinstance(x, self.array_type):
            raise BackendMismatchError(f"{what}: expected an array of {self}, got {_describe(x)}")
        if self.name != "numpy" and not _same_device(self, x):
            raise BackendMismatchError(
                f"{what}: expected an array on device {self.device!s} of {self.name}, got one on "
                f"{_device_of(x)!s}; move it explicitly"
            )

    def with_dtype(self, dtype: Any) -> Backend:
        """The same library and device with another default float dtype."""
        return get_backend(self.name, device=self.device, dtype=dtype)

    def sync(self, x: Any = None) -> None:
        """Block until queued device work is finished (a no-op on the CPU backends).

        For JAX pass the array whose computation should finish.
        """
        if self.name == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        elif self.name == "torch" and self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        elif self.name == "jax" and x is not None:
            x.block_until_ready()

    def float_errors_ignored(self):
        """A context in which overflow / invalid-value warnings are off (NumPy's errstate).

        For code that checks the results for non-finite values itself, like ``fit``.
        """
        if self.name in ("numpy", "array_api_strict"):  # (array_api_strict computes with NumPy)
            return np.errstate(over="ignore", invalid="ignore", divide="ignore")
        return contextlib.nullcontext()

    @property
    def on_host(self) -> bool:
        """True when arrays live in host memory, so reading a value back costs no device sync."""
        if self.name in ("numpy", "array_api_strict"):
            return True
        if self.name == "torch":
            return self.device.type == "cpu"
        if self.name == "jax":
            return self.device.platform == "cpu"
        return False

    @property
    def dtype_name(self) -> str:
        return _dtype_name(self.dtype)

    def __str__(self) -> str:
        return f"Backend({self.name}, device={self.device!s}, dtype={self.dtype_name})"


def _dtype_name(dtype: Any) -> str:
    text = str(dtype)
    for name in ("bfloat16", "float16", "float32", "float64", "int64", "int32", "bool"):
        if name in text:
            return name
    return text


def _numpy_dtype(dtype: Any):
    name = _dtype_name(dtype)
    return np.dtype(name) if name in ("float16", "float32", "float64", "int64", "int32") else None


def _check_cast_range(host: np.ndarray, target: Any, what: str) -> None:
    """Refuse finite host floats that a cast to the narrower float ``target`` makes ±inf.

    The scan (:func:`~arrayprop.validation.check_finite`, which decides from the two dtypes whether
    one is needed) runs only when the cast narrows: float64 data for a float32 model. NaN and
    inf pass: they are the data's own, and the training entry points refuse them themselves.
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


def _is_float(xp, x) -> bool:
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


def _is_host(x: Any) -> bool:
    if isinstance(x, np.ndarray | np.generic | int | float | bool | list | tuple):
        return True
    mod = type(x).__module__.split(".")[0]
    return mod not in ("cupy", "torch", "jax", "jaxlib", "array_api_strict", "dask")


def _describe(x: Any) -> str:
    mod = type(x).__module__.split(".")[0]
    dev = _device_of(x)
    return f"{mod}.{type(x).__name__}" + (f" on {dev}" if dev is not None else "")


def _device_of(x: Any):
    try:
        import array_api_compat

        return array_api_compat.device(x)
    except Exception:
        return None


def _same_device(backend: Backend, x: Any) -> bool:
    if backend.name == "cupy":
        return x.device.id == backend.device.id
    if backend.name == "torch":
        return x.device == backend.device
    if backend.name == "jax":
        try:
            return backend.device in x.devices()
        except Exception:
            return True
    return x.device == backend.device


def host_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float64 zeros on the host (the ``zeros`` initialiser)."""
    return np.zeros(shape)


_CACHE: dict[tuple[str, str, str], Backend] = {}


def get_backend(
    name: str | Backend | None = None, device: Any = None, dtype: Any = None
) -> Backend:
    """Return the :class:`Backend` for an array library, device and default float dtype.

    Parameters
    ----------
    name : str or Backend, optional
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"`` or ``"array_api_strict"``. Defaults to
        the ``ARRAYPROP_BACKEND`` environment variable, then ``"numpy"``. A Backend is returned
        as is (or with the requested device/dtype).
    device : str or device object, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... Defaults to the library's default device;
        ``ARRAYPROP_DEVICE`` is used only when the backend too comes from the environment
        (``name`` is None), since a device name of one library means nothing to another.
    dtype : str or dtype, optional
        Default float dtype: ``"float32"`` (default), ``"float64"``, ``"float16"`` or
        ``"bfloat16"`` where the library has it.

    Raises
    ------
    ValueError
        For an unknown backend name (the message lists the valid ones).
    BackendUnavailableError
        When the library is not installed (the message says what to install) or the device is
        not there.
    DTypeError
        For a dtype the library lacks.
    """
    if isinstance(name, Backend):
        if device is None and dtype is None:
            return name
        return get_backend(
            name.name,
            device=name.device if device is None else device,
            dtype=name.dtype if dtype is None else dtype,
        )
    if name is None:
        name = os.environ.get("ARRAYPROP_BACKEND") or "numpy"
        if device is None:
            device = os.environ.get("ARRAYPROP_DEVICE") or None
    name = name.strip().lower().replace("-", "_")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    key = (name, str(device), str(dtype))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    xp = _namespace(name)
    dev = _resolve_device(name, xp, device)
    if name == "numpy" and str(dev) != "cpu":
        raise BackendUnavailableError(f"backend 'numpy' has only the device 'cpu', not {device!r}")
    backend = Backend(
        name=name,
        xp=xp,
        device=dev,
        dtype=_resolve_dtype(name, xp, dtype),
        array_type=_array_type(name),
    )
    _CACHE[key] = backend
    return backend


def backend_of(x: Any, dtype: Any = None) -> Backend:
    """The Backend (library and device) an array lives on."""
    import array_api_compat

    if isinstance(x, np.ndarray):
        return get_backend("numpy", dtype=dtype)
    mod = type(x).__module__.split(".")[0]
    for name in ("cupy", "torch", "array_api_strict"):
        if mod == name:
            return get_backend(name, device=array_api_compat.device(x), dtype=dtype)
    if mod in ("jax", "jaxlib"):
        return get_backend("jax", device=next(iter(x.devices())), dtype=dtype)
    raise BackendMismatchError(f"not an array of a supported backend: {_describe(x)}")


_LIBRARIES = {
    "numpy": "numpy",
    "cupy": "cupy",
    "torch": "torch",
    "jax": "jax",
    "array_api_strict": "array_api_strict",
}


def _devices(name: str) -> list[str]:
    """Device names of an installed backend (for ``arrayprop info``)."""
    if name == "numpy":
        return ["cpu"]
    if name == "array_api_strict":
        return [str(get_backend(name).device)]
    lib = importlib.import_module(_LIBRARIES[name])
    if name == "cupy":
        runtime = lib.cuda.runtime
        return [
            f"cuda:{i} ({runtime.getDeviceProperties(i)['name'].decode()})"
            for i in range(runtime.getDeviceCount())
        ]
    if name == "torch":
        cuda = lib.cuda
        gpus = [f"cuda:{i} ({cuda.get_device_name(i)})" for i in range(cuda.device_count())]
        return ["cpu", *gpus] if cuda.is_available() else ["cpu"]
    return [f"{d.platform}:{d.id}" for d in lib.devices()]


def describe_backends() -> list[dict[str, Any]]:
    """Per backend: name, installed, version, usable, devices, and why not when unusable."""
    rows = []
    for name in BACKENDS:
        row: dict[str, Any] = {"name": name, "installed": False, "version": None}
        row.update(usable=False, devices=[], note="")
        if importlib.util.find_spec(_LIBRARIES[name]) is None:
            row["note"] = "not installed"
            rows.append(row)
            continue
        row["installed"] = True
        try:
            row["version"] = getattr(importlib.import_module(_LIBRARIES[name]), "__version__", "?")
            get_backend(name)
            row["devices"] = _devices(name)
            row["usable"] = True
        except Exception as exc:  # a broken install or driver is a finding, not a crash
            row["note"] = " ".join(str(exc).split())[:160]
        rows.append(row)
    return rows
