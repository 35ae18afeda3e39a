"""The JAX backend: immutable arrays on a JAX device (see docs/backends.md).

JAX is imported when the backend is first asked for; its namespace is ``jax.numpy``. Dispatch
is asynchronous per array, so :meth:`JaxBackend.sync` waits for the array it is given.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from arrayprop.backends.base import Backend
from arrayprop.errors import BackendUnavailableError

__all__ = ["JaxBackend"]


class JaxBackend(Backend):
    """JAX arrays on one device (``"cpu"``, ``"gpu"``, ``"cuda:0"``, a ``jax.Device``)."""

    name = "jax"
    library = "jax"
    namespace_module = "jax.numpy"
    install_hint = 'pip install "arrayprop[jax]"'
    array_modules = ("jax", "jaxlib")

    @classmethod
    def resolve_device(cls, xp: ModuleType, device: Any) -> Any:
        """``None`` (JAX's first device), a name (``"cpu"``, ``"gpu"``, ``"cuda:0"``, the
        ``str`` of a device), an index into ``jax.devices()`` or a ``jax.Device`` of this
        process; anything else raises :class:`~arrayprop.errors.BackendUnavailableError`."""
        import jax

        devices = jax.devices()
        if device is None:
            return devices[0]
        if isinstance(device, int) and not isinstance(device, bool):
            if 0 <= device < len(devices):
                return devices[device]
        elif isinstance(device, str):
            for d in devices:
                if device in (str(d), d.platform, f"{d.platform}:{d.id}"):
                    return d
        elif isinstance(device, jax.Device):
            try:
                if device in jax.devices(device.platform):
                    return device
            except RuntimeError:  # no backend of that platform here
                pass
        raise BackendUnavailableError(
            f"backend 'jax': no device {device!r}; available: {[str(d) for d in devices]}"
        )

    @classmethod
    def library_dtype(cls, xp: ModuleType, wanted: str) -> Any:
        if wanted == "float64":
            import jax

            # JAX computes in float32 unless x64 is on (process-wide).
            jax.config.update("jax_enable_x64", True)
        return super().library_dtype(xp, wanted)

    @classmethod
    def load_array_type(cls, xp: ModuleType) -> type:
        import jax

        return jax.Array

    @classmethod
    def of_array(cls, x: Any, dtype: Any = None) -> Backend | None:
        if type(x).__module__.split(".")[0] not in cls.array_modules:
            return None
        return cls.instance(next(iter(x.devices())), dtype)

    @classmethod
    def list_devices(cls) -> list[str]:
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]

    def device_get(self, x: Any) -> np.ndarray:
        # ml_dtypes' bfloat16 is no NumPy float kind; hand the host float32, as for torch.
        return np.asarray(x.astype("float32") if "bfloat16" in str(x.dtype) else x)

    def same_device(self, x: Any) -> bool:
        try:
            return self.device in x.devices()
        except Exception:  # devices() unreadable (an abstract tracer, say): accept, not refuse
            return True

    def sync(self, x: Any = None) -> None:
        if x is not None:
            x.block_until_ready()

    @property
    def on_host(self) -> bool:
        return self.device.platform == "cpu"
