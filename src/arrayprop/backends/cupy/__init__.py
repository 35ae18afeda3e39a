"""The CuPy backend and everything CUDA (see docs/backends.md and docs/gpu.md).

- this module: the adapter; CuPy is imported when a backend is first asked for;
- :mod:`.kernels`: fused elementwise kernels around cuBLAS GEMMs (the fast paths);
- :mod:`.cublas`: a cuBLAS GEMM through ctypes that stays legal under stream capture, and
  CuPy's float32 GEMM mode (TF32);
- :mod:`.capture`: the stream capture behind :class:`~arrayprop.CudaGraphStep`.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from arrayprop.backends.base import Backend
from arrayprop.backends.cupy import cublas
from arrayprop.errors import BackendUnavailableError

__all__ = ["CupyBackend"]


class CupyBackend(Backend):
    """CuPy arrays on one CUDA device."""

    name = "cupy"
    library = "cupy"
    namespace_module = "array_api_compat.cupy"
    install_hint = 'pip install "arrayprop[cuda12]"  (or arrayprop[cuda13] for CUDA 13)'
    array_modules = ("cupy",)
    fast_module = "arrayprop.backends.cupy.kernels"
    supports_tf32 = True

    @classmethod
    def resolve_device(cls, xp: ModuleType, device: Any) -> Any:
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

    @classmethod
    def load_array_type(cls, xp: ModuleType) -> type:
        import cupy

        return cupy.ndarray

    @classmethod
    def list_devices(cls) -> list[str]:
        import cupy

        runtime = cupy.cuda.runtime
        return [
            f"cuda:{i} ({runtime.getDeviceProperties(i)['name'].decode()})"
            for i in range(runtime.getDeviceCount())
        ]

    def device_put(self, host: np.ndarray) -> Any:
        with self.device:  # CuPy allocates on the current device
            return self.xp.asarray(host)

    def device_get(self, x: Any) -> np.ndarray:
        return x.get()

    def same_device(self, x: Any) -> bool:
        return x.device.id == self.device.id

    def sync(self, x: Any = None) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()

    def graph_capture(self) -> Any:
        # Imported on use: the capture module allocates a stream, a pool and a cuBLAS handle.
        from arrayprop.backends.cupy.capture import CupyCapture

        return CupyCapture(self)

    # CuPy reads CUPY_TF32 at its first float32 GEMM and caches it; the variable is the setting
    # (None: unset), and the cached mode is updated alongside (best effort, private CuPy API).
    @classmethod
    def tf32_setting(cls) -> str | None:
        return os.environ.get("CUPY_TF32")

    @classmethod
    def set_tf32(cls, enabled: bool) -> bool:
        previous = cls.tf32_setting()
        cls.restore_tf32("1" if enabled else "0")
        return _on(previous)

    @classmethod
    def restore_tf32(cls, setting: str | None) -> None:
        previous = cls.tf32_setting()
        _set_env(setting)
        try:
            cublas.set_cupy_tf32(_on(setting))
        except RuntimeError as exc:
            # CuPy checks the device's compute capability when TF32 is switched on, and raises
            # its CUDARuntimeError (a RuntimeError) where it is installed without a usable CUDA
            # driver or device. That is this library's "no usable device": nothing changes.
            _set_env(previous)
            raise BackendUnavailableError(
                f"backend 'cupy' is installed but no CUDA device is usable, so TF32 cannot be "
                f"switched ({type(exc).__name__}: {exc})"
            ) from exc


def _set_env(setting: str | None) -> None:
    if setting is None:
        os.environ.pop("CUPY_TF32", None)
    else:
        os.environ["CUPY_TF32"] = setting


def _on(setting: str | None) -> bool:
    return setting is not None and setting not in ("", "0", "ieee", "none")


def _cuda_index(device: Any) -> int:
    """The device number of ``3``, ``"cuda:3"`` or ``"gpu:3"`` (``"cuda"``: 0)."""
    if isinstance(device, int):
        return device
    text = str(device)
    if text in ("cuda", "gpu"):
        return 0
    for prefix in ("cuda:", "gpu:"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return int(text[len(prefix) :])
    raise BackendUnavailableError(f"backend 'cupy': cannot parse device {device!r} (use 'cuda:N')")
