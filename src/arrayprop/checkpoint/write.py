"""Saving a checkpoint: collect the arrays, build the header and write the file atomically.

A temporary file in the target's directory is written, flushed, fsynced and renamed onto the
target, so a crash leaves the previous checkpoint intact; the temporary a killed writer leaves
behind is removed by the next save to that path. The layout is described in
:mod:`arrayprop.checkpoint.format`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import secrets
import stat
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from arrayprop.backends import backend_of
from arrayprop.checkpoint.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER,
    MAX_HEADER_BYTES,
    canonical_json,
    checksum,
)
from arrayprop.errors import CheckpointError
from arrayprop.nn.layer import Layer, state_backend
from arrayprop.nn.registry import layer_config, layer_from_config, layer_type_name
from arrayprop.version import __version__

__all__ = ["save"]


def save(
    model: Layer,
    path: str | os.PathLike[str],
    optimizer: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally its optimizer's state and ``extra``) to ``path``, atomically.

    Parameters
    ----------
    model : Layer
        A model with parameters, usually a Sequential; its ``config()`` must be JSON-able.
    path : str or os.PathLike
        The target file (conventionally ``*.npz``). Its directory must exist. An existing file is
        replaced only once the new one is completely on disk.
    optimizer : Optimizer, optional
        Saved through ``optimizer.state_dict()``: type, hyperparameters, step count and every
        per-parameter state array (momentum buffers, Adam moments, ...).
    extra : dict, optional
        Anything else to keep (epoch, history, data statistics...). Values must be JSON-able,
        except top-level NumPy arrays, which are stored as arrays (never pickled).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    CheckpointError
        If the model has no parameters or ``extra`` holds something that cannot be stored.
    OSError
        If the file cannot be written; the previous file at ``path`` is then left untouched.
    """
    path = Path(path)
    named = list(model.named_parameters())
    params = [p for _, p in named]
    be = model.backend if model.backend is not None else state_backend(model)
    if not params or be is None:
        raise CheckpointError(f"cannot checkpoint {model!r} to {path}: it has no parameters")
    check_rebuildable(model, path)
    arrays: dict[str, np.ndarray] = {}
    param_info = []
    for i, (name, p) in enumerate(named):
        host = np.asarray(be.to_host(p.data))
        arrays[f"param.{i}"] = host
        param_info.append({"name": name, "shape": list(host.shape)})
    buffer_info = []
    for i, (name, b) in enumerate(model.named_buffers()):
        host = np.asarray(backend_of(b.data).to_host(b.data))
        arrays[f"buffer.{i}"] = host
        buffer_info.append({"name": name, "shape": list(host.shape), "dtype": host.dtype.str})

    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arrayprop_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": layer_config(model),
        "dtype": be.dtype_name,
        "backend": be.name,
        "device": str(be.device),
        "parameters": param_info,
        "buffers": buffer_info,
        "optimizer": None if optimizer is None else _optimizer_header(optimizer, params, arrays),
    }
    header["extra"], header["extra_arrays"] = _split_extra(extra, arrays, path)
    header["arrays"] = sorted(arrays)
    # A JSON round trip first, so the checksum is over exactly what a reader will re-serialise.
    try:
        header = json.loads(canonical_json(header))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot checkpoint to {path}: header is not JSON-able ({exc})"
        ) from exc
    header["checksum"] = checksum(header, arrays)
    encoded = canonical_json(header)
    if len(encoded) > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"cannot checkpoint to {path}: its header takes {len(encoded)} bytes of JSON, more "
            f"than the {MAX_HEADER_BYTES} load reads; pass large data in extra as NumPy arrays"
        )
    arrays[HEADER] = np.frombuffer(encoded, dtype=np.uint8)
    _write_atomic(path, arrays)
    return path


def check_rebuildable(model: Layer, path: Path) -> None:
    """Refuse, before anything is written, a model that :func:`~arrayprop.checkpoint.load`
    could not rebuild: a layer whose class is not registered, a config that is not JSON, or a
    config from which the class does not rebuild a layer with the same state names and shapes.

    Raises
    ------
    CheckpointError
        Naming the layer (its path in the model) and the fix.
    """
    for where, layer in model.named_layers():
        label = f"layer {where!r} ({type(layer).__qualname__})" if where else f"{model!r}"
        if layer_type_name(type(layer)) is None:
            raise CheckpointError(
                f"cannot checkpoint to {path}: {label} is not a registered layer type, so "
                "loading could not rebuild it; decorate its class with @arrayprop.register_layer "
                "(and give it config() returning its constructor arguments)"
            )
        config = layer_config(layer)
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"cannot checkpoint to {path}: the config() of {label} is not JSON ({exc})"
            ) from exc
        if type(layer).__module__.startswith("arrayprop."):
            continue  # built-ins rebuild from their config by construction (tested)
        try:
            rebuilt = layer_from_config(config, backend=layer.backend)
        except Exception as exc:
            raise CheckpointError(
                f"cannot checkpoint to {path}: {label} does not rebuild from its config "
                f"{config} ({type(exc).__name__}: {exc}); make config() return the arguments "
                "its __init__ needs"
            ) from exc
        if _state_shapes(rebuilt) != _state_shapes(layer):
            raise CheckpointError(
                f"cannot checkpoint to {path}: {label} rebuilt from its config {config} has state "
                f"{_state_shapes(rebuilt)}, not {_state_shapes(layer)}; make config() return the "
                "arguments its __init__ needs"
            )


def _state_shapes(layer: Layer) -> dict[str, tuple[int, ...]]:
    return {name: item.shape for name, item in [*layer.named_parameters(), *layer.named_buffers()]}


def _optimizer_header(
    optimizer: Any, params: list[Any], arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Put the optimizer's state arrays into ``arrays``; return the JSON part."""
    state = dict(optimizer.state_dict())
    per_param = state.pop("state", [])
    if len(per_param) != len(params):
        raise CheckpointError(
            f"optimizer {type(optimizer).__name__} holds state for {len(per_param)} parameters "
            f"but the model has {len(params)}; was it built for this model?"
        )
    names: list[list[str]] = []
    for i, entry in enumerate(per_param):
        for name, value in entry.items():
            arrays[f"optim.{i}.{name}"] = _host_array(value, f"optimizer state {i}.{name}")
        names.append(sorted(entry))
    # Everything else (type, hyperparameters, lr, steps, ...) is JSON and kept as given.
    return {**state, "state": names}


def _split_extra(
    extra: dict[str, Any] | None, arrays: dict[str, np.ndarray], path: Path
) -> tuple[dict[str, Any], list[str]]:
    """Move ``extra``'s top-level NumPy arrays into ``arrays``; return the JSON rest."""
    if extra is None:
        return {}, []
    if not isinstance(extra, dict):
        raise CheckpointError(f"cannot checkpoint to {path}: extra must be a dict, got {extra!r}")
    plain: dict[str, Any] = {}
    names: list[str] = []
    for key, value in extra.items():
        if isinstance(value, np.ndarray):
            arrays[f"extra.{key}"] = _host_array(value, f"extra[{key!r}]")
            names.append(str(key))
        else:
            plain[key] = value
    return plain, sorted(names)


def _host_array(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise CheckpointError(f"{what}: only numeric arrays can be stored, got dtype {arr.dtype}")
    return arr


def _write_member(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, arr, allow_pickle=False)


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a temporary beside ``path``, fsync it and rename it onto ``path``.

    The file gets the permission bits of the file it replaces, or, for a new file, those of
    any new file (0666 less the umask). An OSError names ``path``, not the temporary.
    """
    directory = path.parent if str(path.parent) else Path(".")
    try:
        _remove_stale_temporaries(directory, path.name)
        fd, tmp = _create_temporary(directory, path.name)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            _keep_mode(path, f.fileno())
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                for name in sorted(arrays):
                    _write_member(zf, name, arrays[name])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    _fsync_directory(directory)


def _keep_mode(path: Path, fd: int) -> None:
    """Give the temporary ``fd`` the permission bits of the file at ``path``, if one exists
    (a new file keeps those ``open`` gave it: 0666 less the umask)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)


def _create_temporary(directory: Path, name: str) -> tuple[int, str]:
    """Create ``.{name}.{pid}.{random}.tmp`` in ``directory`` (exclusively, mode 0666 less the
    umask, like any new file); return its descriptor and path. The writer's pid in the name
    lets a later save tell a temporary left by a killed process from one still being written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(directory))


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` restated about the checkpoint ``path`` (not the hidden temporary it names)."""
    if exc.errno is None:
        return OSError(f"cannot write checkpoint {path}: {exc}")
    # OSError(errno, ...) builds the matching subclass (PermissionError, ...).
    return OSError(exc.errno, f"cannot write checkpoint ({exc.strerror})", str(path))


#: The part of a temporary's name after ``.{name}.``: the writer's pid and a random token.
_TEMPORARY_TAIL = re.compile(r"(\d+)\.[A-Za-z0-9_]+\.tmp")


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Delete the temporaries of earlier saves to ``name`` whose writer process is gone.

    A process killed mid-save (SIGKILL, power loss) leaves its ``.{name}.{pid}.{random}.tmp``
    behind; :func:`~arrayprop.checkpoint.load` never reads it, and the next save removes it
    here. Temporaries of live processes are left alone, and so are those of saves to other
    names that begin with ``name`` (``.m.npz.99999.{pid}.{random}.tmp`` belongs to
    ``m.npz.99999``, not to ``m.npz``). POSIX only: elsewhere there is no safe liveness probe.
    """
    if os.name != "posix":
        return
    prefix = f".{name}."
    for entry in directory.glob(f"{glob.escape(prefix)}*.tmp"):
        match = _TEMPORARY_TAIL.fullmatch(entry.name[len(prefix) :])
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                entry.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to another user, or cannot be asked: keep its file
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
