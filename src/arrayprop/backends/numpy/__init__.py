"""The NumPy backend: host arrays, and fast kernels in :mod:`.kernels` / :mod:`.blas`.

See docs/backends.md. NumPy's arrays are host data already, so "moving to the device" is at most
a dtype cast; its fast kernels (in-place ufuncs, a fused SGD GEMM) are imported on first use.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import numpy as np

from arrayprop.backends.base import Backend, check_cast_range
from arrayprop.errors import BackendUnavailableError, DTypeError

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    """NumPy on the CPU (through ``array_api_compat.numpy``)."""

    name = "numpy"
    uses_numpy_blas = True
    library = "numpy"
    namespace_module = "array_api_compat.numpy"
    install_hint = "pip install numpy"
    fast_module = "arrayprop.backends.numpy.kernels"

    @classmethod
    def resolve_device(cls, xp: ModuleType, device: Any) -> Any:
        dev = super().resolve_device(xp, device)
        if str(dev) != "cpu":
            raise BackendUnavailableError(
                f"backend 'numpy' has only the device 'cpu', not {device!r}"
            )
        return dev

    @classmethod
    def load_array_type(cls, xp: ModuleType) -> type:
        return np.ndarray

    @classmethod
    def of_array(cls, x: Any, dtype: Any = None) -> Backend | None:
        return cls.instance(dtype=dtype) if isinstance(x, np.ndarray) else None

    @classmethod
    def list_devices(cls) -> list[str]:
        return ["cpu"]

    def adopt(
        self, x: Any, dtype: Any = None, *, what: str = "data", check_range: bool = True
    ) -> Any:
        # Only a plain ndarray is the backend's own: a subclass (np.matrix, a memmap) is host
        # data, converted by from_host like a list.
        if type(x) is not np.ndarray:
            return self.from_host(x, dtype, what=what, check_range=check_range)
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"{self}: cannot use data of dtype {x.dtype} (need numbers)")
        target = dtype if dtype is not None else (self.dtype if x.dtype.kind == "f" else None)
        if target is not None and x.dtype != target:
            # The array is host data, so a narrowing cast is checked like any host data's.
            if check_range:
                check_cast_range(x, target, what)
            x = self.xp.astype(x, target)
        return x

    def device_put(self, host: np.ndarray) -> Any:
        return host

    def same_device(self, x: Any) -> bool:
        return True  # one device

    def errstate(self, **settings: str) -> AbstractContextManager[Any]:
        return np.errstate(**settings)

    @property
    def on_host(self) -> bool:
        return True
