"""The array-api-strict backend: the standard's reference namespace (see docs/backends.md).

It computes with NumPy on the host but keeps to the standard and nothing more, and it has
several named "devices", which is how the tests check that arrays never cross devices silently.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from arrayprop.backends.base import Backend

__all__ = ["ArrayApiStrictBackend"]


class ArrayApiStrictBackend(Backend):
    """array_api_strict arrays on one of its named devices (``"CPU_DEVICE"``, ``"device1"``)."""

    name = "array_api_strict"
    uses_numpy_blas = True
    library = "array_api_strict"
    namespace_module = "array_api_strict"
    install_hint = "pip install array-api-strict"
    array_modules = ("array_api_strict",)

    def device_get(self, x: Any) -> np.ndarray:
        # (np.asarray refuses arrays on its non-default devices; DLPack takes any of them.)
        return np.from_dlpack(x)

    def errstate(self, **settings: str) -> AbstractContextManager[Any]:
        return np.errstate(**settings)  # it computes with NumPy, which warns

    @property
    def on_host(self) -> bool:
        return True
