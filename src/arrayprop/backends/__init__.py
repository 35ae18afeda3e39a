"""Backends: one adapter per array library behind one interface (see docs/backends.md).

:func:`get_backend` picks an adapter from :data:`ADAPTERS` by name and returns its cached
:class:`Backend` for a device and a default dtype; :func:`backend_of` finds the backend of an
array. The adapters (``numpy/``, ``cupy/``, ``torch.py``, ``jax.py``, ``array_api_strict.py``)
import their library only when first asked for a backend, so importing this package imports
NumPy and no other array library. This package is the only one that names array libraries.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from arrayprop.backends.array_api_strict import ArrayApiStrictBackend
from arrayprop.backends.base import Backend, describe_array, host_zeros, is_host
from arrayprop.backends.cupy import CupyBackend
from arrayprop.backends.jax import JaxBackend
from arrayprop.backends.numpy import NumpyBackend
from arrayprop.backends.torch import TorchBackend
from arrayprop.errors import BackendMismatchError

__all__ = [
    "ADAPTERS",
    "BACKENDS",
    "Backend",
    "adapter",
    "backend_of",
    "describe_array",
    "describe_backends",
    "get_backend",
    "host_zeros",
    "is_host",
]

#: Backend name -> adapter class, in the order ``arrayprop info`` lists them.
ADAPTERS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (NumpyBackend, CupyBackend, TorchBackend, JaxBackend, ArrayApiStrictBackend)
}

#: Backend names in the order ``arrayprop info`` lists them.
BACKENDS = tuple(ADAPTERS)


def adapter(name: str) -> type[Backend]:
    """The adapter class of a backend name (case, spaces and ``-`` for ``_`` forgiven).

    Raises ``ValueError`` for an unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str):
        raise ValueError(
            f"backend must be a name (one of {', '.join(BACKENDS)}) or a Backend, got {name!r}"
        )
    key = name.strip().lower().replace("-", "_")
    try:
        return ADAPTERS[key]
    except KeyError:
        raise ValueError(
            f"unknown backend {key!r}; valid backends: {', '.join(BACKENDS)}"
        ) from None


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
        return type(name).instance(
            name.device if device is None else device, name.dtype if dtype is None else dtype
        )
    if name is None:
        name = os.environ.get("ARRAYPROP_BACKEND") or "numpy"
        if device is None:
            device = os.environ.get("ARRAYPROP_DEVICE") or None
    return adapter(name).instance(device, dtype)


def backend_of(x: Any, dtype: Any = None) -> Backend:
    """The Backend (library and device) an array lives on, with default float ``dtype``.

    Raises :class:`~arrayprop.errors.BackendMismatchError` for anything but an array of a
    supported library (host lists and NumPy scalars included).
    """
    for cls in ADAPTERS.values():
        found = cls.of_array(x, dtype)
        if found is not None:
            return found
    raise BackendMismatchError(f"not an array of a supported backend: {describe_array(x)}")


def describe_backends() -> list[dict[str, Any]]:
    """Per backend: name, installed, version, usable, devices, and why not when unusable."""
    rows = []
    for name, cls in ADAPTERS.items():
        row: dict[str, Any] = {"name": name, "installed": False, "version": None}
        row.update(usable=False, devices=[], note="")
        if importlib.util.find_spec(cls.library) is None:
            row["note"] = "not installed"
            rows.append(row)
            continue
        row["installed"] = True
        try:
            row["version"] = getattr(importlib.import_module(cls.library), "__version__", "?")
            cls.instance()
            row["devices"] = cls.list_devices()
            row["usable"] = True
        except Exception as exc:  # a broken install or driver is a finding, not a crash
            row["note"] = " ".join(str(exc).split())[:160]
        rows.append(row)
    return rows
