"""The PyTorch backend: tensors on the CPU or a CUDA device (see docs/backends.md).

PyTorch is imported when the backend is first asked for (through ``array_api_compat.torch``).
:mod:`.kernels` holds its fast paths (fused bias GEMMs, in-place activations and SGD, and
bfloat16 GEMMs run in float32 on CPUs without bfloat16 units: docs/precision.md). Its TF32
switch is ``torch.backends.cuda.matmul.fp32_precision`` (``allow_tf32`` before 2.9).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from arrayprop.backends.base import Backend
from arrayprop.errors import BackendUnavailableError

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """PyTorch tensors on one device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...)."""

    name = "torch"
    library = "torch"
    namespace_module = "array_api_compat.torch"
    install_hint = 'pip install "arrayprop[torch]"'
    array_modules = ("torch",)
    fast_module = "arrayprop.backends.torch.kernels"
    supports_tf32 = True

    @classmethod
    def resolve_device(cls, xp: ModuleType, device: Any) -> Any:
        """``None`` / ``"cpu"``, or a CUDA device that exists (``"cuda"``, ``"cuda:1"``, the
        index ``1``, a ``torch.device``); anything else (``"mps"``, ``"meta"``, ``"xpu"``, an
        unknown name, a GPU index beyond the count) raises
        :class:`~arrayprop.errors.BackendUnavailableError` naming the device."""
        import torch

        if device is None:
            return torch.device("cpu")
        if isinstance(device, bool) or not isinstance(device, str | int | torch.device):
            raise _no_device(device, f"a {type(device).__name__} is no device")
        try:
            # An int is a CUDA index here (torch would read it as the current accelerator's).
            dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise _no_device(device, f"torch cannot parse it: {exc}") from None
        if dev.type == "cpu":
            if dev.index not in (None, 0):
                raise _no_device(device, "torch has one CPU device, 'cpu'")
            return torch.device("cpu")  # "cpu:0" and "cpu" are one backend, as tensors see it
        if dev.type != "cuda":
            raise _no_device(device, f"arrayprop does not support torch's {dev.type!r} devices")
        if not torch.cuda.is_available():
            raise _no_device(
                device, "torch.cuda.is_available() is False: a CPU-only build, or no visible GPU"
            )
        count = torch.cuda.device_count()
        # An explicit index, so that "cuda" and "cuda:0" are one backend.
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if not 0 <= index < count:
            raise _no_device(device, f"{count} CUDA device(s) found")
        return torch.device("cuda", index)

    @classmethod
    def library_dtype(cls, xp: ModuleType, wanted: str) -> Any:
        if wanted == "bfloat16":  # (older array_api_compat namespaces lack it)
            import torch

            return torch.bfloat16
        return super().library_dtype(xp, wanted)

    @classmethod
    def load_array_type(cls, xp: ModuleType) -> type:
        import torch

        return torch.Tensor

    @classmethod
    def list_devices(cls) -> list[str]:
        import torch

        cuda = torch.cuda
        gpus = [f"cuda:{i} ({cuda.get_device_name(i)})" for i in range(cuda.device_count())]
        return ["cpu", *gpus] if cuda.is_available() else ["cpu"]

    def device_put(self, host: np.ndarray) -> Any:
        import torch

        if not host.flags.writeable:
            host = host.copy()  # torch tensors cannot alias read-only memory (a memmap "r")
        return torch.from_numpy(host).to(self.device)

    def device_get(self, x: Any) -> np.ndarray:
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()  # NumPy has no bfloat16
        return x.cpu().numpy()

    def sync(self, x: Any = None) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    @property
    def on_host(self) -> bool:
        return self.device.type == "cpu"

    # The setting is the switch's raw value ("tf32" / "ieee" or, before PyTorch 2.9, a bool).
    @classmethod
    def tf32_setting(cls) -> Any:
        matmul = _matmul_switches()
        return matmul.fp32_precision if hasattr(matmul, "fp32_precision") else matmul.allow_tf32

    @classmethod
    def set_tf32(cls, enabled: bool) -> bool:
        previous = cls.tf32_setting()
        if isinstance(previous, str):
            cls.restore_tf32("tf32" if enabled else "ieee")
        else:
            cls.restore_tf32(bool(enabled))
        return _on(previous)

    @classmethod
    def restore_tf32(cls, setting: Any) -> None:
        matmul = _matmul_switches()
        # PyTorch >= 2.9 raises when its legacy and new switches are mixed: use only one.
        if hasattr(matmul, "fp32_precision"):
            matmul.fp32_precision = setting
        else:
            matmul.allow_tf32 = setting


def _no_device(device: Any, why: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend 'torch': no device {device!r} ({why}); use 'cpu' or 'cuda[:N]'"
    )


def _matmul_switches() -> Any:
    import torch

    return torch.backends.cuda.matmul


def _on(setting: Any) -> bool:
    return setting in ("tf32", True) or (
        isinstance(setting, str) and setting not in ("", "0", "ieee", "none")
    )
