"""Checkpoints: one pickle-free ``.npz`` file holding a model, its optimizer state and extras.

Layout of the file (a zip archive of ``.npy`` members, readable with ``numpy.load``):

``header``
    uint8 array of the UTF-8 bytes of a JSON object: ``format`` ("arrayprop-checkpoint"),
    ``version``, the architecture (``model.config()``), the dtype and source backend, the
    parameter names and shapes, the optimizer's type / hyperparameters / step count, ``extra``,
    and ``checksum``.
``param.{i}``
    The i-th entry of ``model.parameters()``, a host copy.
``optim.{i}.{name}``
    The optimizer's state array ``name`` for parameter ``i``.
``extra.{name}``
    Host arrays passed in ``extra``.

``checksum`` is the SHA-256 of the canonical JSON of the header without that field, followed by
each array's name, dtype, shape and bytes in name order, so a flipped bit anywhere in the data
is caught before anything is loaded. Nothing is ever unpickled (``allow_pickle=False`` both
ways). Files are written atomically: a temporary file in the same directory is written, flushed,
fsynced and renamed onto the target, so a crash leaves the previous checkpoint intact; the
temporary a killed writer leaves behind is removed by the next save to that path.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from arrayprop.backends import Backend, get_backend
from arrayprop.errors import CheckpointError
from arrayprop.nn.layers import Layer, layer_from_config, sequential_from_config

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Checkpoint", "load", "restore_optimizer", "save"]

FORMAT_NAME = "arrayprop-checkpoint"
#: Bumped whenever a reader of an older version could not read the new layout.
FORMAT_VERSION = 1

_HEADER = "header"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class Checkpoint:
    """What :func:`load` returns.

    Attributes
    ----------
    model : Layer
        The rebuilt model (usually a :class:`~arrayprop.layers.Sequential`) on the requested
        backend, with the saved weights.
    optimizer_state : dict or None
        The saved ``optimizer.state_dict()``: ``type``, ``hyperparameters``, ``lr``, ``steps``
        and ``state``, a list (one entry per model parameter) of ``{name: host ndarray}``; pass
        it to :func:`restore_optimizer`.
    extra : dict
        The ``extra`` given to :func:`save`; its arrays come back as host NumPy arrays.
    info : dict
        File facts: ``path``, ``version``, ``arrayprop_version``, ``backend``, ``device`` and
        ``dtype`` the model was saved from, ``created`` (ISO 8601 UTC) and ``architecture``.
    """

    model: Layer
    optimizer_state: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# -- saving ----------------------------------------------------------------------------------


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
    params = model.parameters()
    if not params or model.backend is None:
        raise CheckpointError(f"cannot checkpoint {model!r} to {path}: it has no parameters")
    be = model.backend
    arrays: dict[str, np.ndarray] = {}
    param_info = []
    for i, p in enumerate(params):
        host = np.asarray(be.to_host(p.data))
        arrays[f"param.{i}"] = host
        param_info.append({"name": p.name, "shape": list(host.shape)})

    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arrayprop_version": _version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": model.config(),
        "dtype": be.dtype_name,
        "backend": be.name,
        "device": str(be.device),
        "parameters": param_info,
        "optimizer": None if optimizer is None else _optimizer_header(optimizer, params, arrays),
    }
    header["extra"], header["extra_arrays"] = _split_extra(extra, arrays, path)
    header["arrays"] = sorted(arrays)
    # A JSON round trip first, so the checksum is over exactly what a reader will re-serialise.
    try:
        header = json.loads(_canonical(header))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot checkpoint to {path}: header is not JSON-able ({exc})"
        ) from exc
    header["checksum"] = _checksum(header, arrays)
    arrays[_HEADER] = np.frombuffer(_canonical(header), dtype=np.uint8)
    _write_atomic(path, arrays)
    return path


def _version() -> str:
    from arrayprop import __version__

    return __version__


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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


def _canonical(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode("utf-8")


def _checksum(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the header minus its checksum, then every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(_canonical({k: v for k, v in header.items() if k != "checksum"}))
    for name in sorted(arrays):
        if name == _HEADER:
            continue
        arr = arrays[name]
        h.update(_canonical([name, arr.dtype.str, list(arr.shape)]))
        h.update(arr.tobytes(order="C"))
    return "sha256:" + h.hexdigest()


def _write_member(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, arr, allow_pickle=False)


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    _remove_stale_temporaries(directory, path.name)
    # Closed by the with below and removed on any failure. The writer's pid in the name lets a
    # later save tell a temporary left by a killed process from one still being written.
    tmp = tempfile.NamedTemporaryFile(
        dir=directory, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for name in sorted(arrays):
                    _write_member(zf, name, arrays[name])
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(directory)


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Delete the temporaries of earlier saves to ``name`` whose writer process is gone.

    A process killed mid-save (SIGKILL, power loss) leaves its ``.{name}.{pid}.*.tmp`` behind;
    :func:`load` never reads it, and the next save removes it here. Temporaries of live
    processes are left alone. POSIX only: elsewhere there is no safe liveness probe.
    """
    if os.name != "posix":
        return
    prefix = f".{name}."
    for entry in directory.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
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


# -- loading ---------------------------------------------------------------------------------


def load(
    path: str | os.PathLike[str],
    backend: str | Backend | None = None,
    device: Any = None,
    dtype: Any = None,
) -> Checkpoint:
    """Read a checkpoint written by :func:`save` and rebuild its model on any backend.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    backend : str or Backend, optional
        Where to put the model (default: :func:`~arrayprop.get_backend`'s default, i.e.
        ``ARRAYPROP_BACKEND`` or numpy). The source backend does not matter: weights travel
        through host NumPy arrays.
    device : str or device object, optional
        The device on that backend.
    dtype : str, optional
        The model's dtype; default the dtype it was saved in.

    Returns
    -------
    Checkpoint

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is not an arrayprop checkpoint, is truncated or corrupted (checksum
        mismatch), has a newer format version, lacks arrays or holds weights whose shapes do not
        match its architecture. The message names the file and the problem.
    """
    path = Path(path)
    header, arrays = _read(path)
    fail = _failer(path)
    arch = header.get("architecture")
    if not isinstance(arch, dict):
        fail("header has no architecture")
    _check_architecture(arch, arrays, fail)
    be = get_backend(backend, device=device, dtype=header["dtype"] if dtype is None else dtype)
    try:
        if arch.get("type") == "Sequential":
            model = sequential_from_config(arch, backend=be)
        else:
            model = layer_from_config(arch, backend=be)
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"cannot rebuild the architecture ({exc})")
    _set_weights(model, header, arrays, be, fail)
    optimizer_state = _optimizer_state(header, arrays, len(model.parameters()), fail)
    extra = dict(header.get("extra") or {})
    for name in header.get("extra_arrays", []):
        extra[name] = arrays[f"extra.{name}"]
    info = {
        "path": str(path),
        "version": header["version"],
        "arrayprop_version": header.get("arrayprop_version"),
        "backend": header.get("backend"),
        "device": header.get("device"),
        "dtype": header["dtype"],
        "created": header.get("created"),
        "architecture": arch,
    }
    return Checkpoint(model=model, optimizer_state=optimizer_state, extra=extra, info=info)


def restore_optimizer(optimizer: Any, checkpoint: Checkpoint | dict[str, Any]) -> Any:
    """Load a checkpoint's optimizer state into ``optimizer`` (built on the loaded model).

    Parameters
    ----------
    optimizer : Optimizer
        An optimizer of the same type, over the parameters of ``checkpoint.model``.
    checkpoint : Checkpoint or dict
        A loaded checkpoint, or its ``optimizer_state``.

    Returns
    -------
    Optimizer
        ``optimizer``, with its step count, hyperparameters and state restored.

    Raises
    ------
    CheckpointError
        If the checkpoint has no optimizer state, or ``optimizer.load_state_dict`` refuses it
        (another optimizer type or hyperparameters, another number or shape of parameters).
    """
    state = checkpoint.optimizer_state if isinstance(checkpoint, Checkpoint) else checkpoint
    where = checkpoint.info.get("path") if isinstance(checkpoint, Checkpoint) else None
    where = where or "checkpoint"
    if state is None:
        raise CheckpointError(f"{where}: holds no optimizer state (saved without optimizer=)")
    try:
        optimizer.load_state_dict(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    return optimizer


def _failer(path: Path):
    def fail(problem: str) -> NoReturn:
        raise CheckpointError(f"{path}: {problem}")

    return fail


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Open, parse and verify the file; return the header and every array (host)."""
    fail = _failer(path)
    # Our own handle: np.load leaks the one it opens when the zip directory is unreadable.
    with open(path, "rb") as f:  # FileNotFoundError propagates as is
        if f.read(4) != _ZIP_MAGIC:
            fail("not an arrayprop checkpoint (not an .npz / zip file)")
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as npz:
                header, arrays = _read_members(npz, fail)
        except CheckpointError:
            raise
        except Exception as exc:
            # Whatever the zip or .npy parser trips over in a damaged file (BadZipFile, CRC and
            # EOF errors, unsupported compression codes, bad .npy headers, and the ValueError
            # of an object array refused by allow_pickle=False) means the same to the caller.
            fail(f"truncated or corrupted file ({type(exc).__name__}: {exc})")
    if header.get("checksum") != _checksum(header, arrays):
        fail("checksum mismatch: the file is corrupted (or was edited after saving)")
    return header, arrays


def _read_members(npz: Any, fail) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    names = set(npz.files)
    if _HEADER not in names:
        fail(f"not an arrayprop checkpoint (no {_HEADER!r} member; a foreign .npz?)")
    header = _parse_header(npz[_HEADER], fail)
    listed = header.get("arrays")
    if not isinstance(listed, list):
        fail("header does not list its arrays")
    missing = sorted(set(listed) - names)
    if missing:
        fail(f"missing arrays {missing} (truncated or edited file)")
    unexpected = sorted(names - set(listed) - {_HEADER})
    if unexpected:
        fail(f"unexpected arrays {unexpected} not listed in the header")
    arrays = {name: npz[name] for name in listed}
    for name, value in arrays.items():
        # np.load hands back the raw bytes of a member that is not .npy (a pickle, say).
        if not isinstance(value, np.ndarray):
            fail(f"corrupted or foreign file: member {name!r} is not a .npy array")
    return header, arrays


def _parse_header(raw: np.ndarray, fail) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        fail(f"header must be a 1-D uint8 array, got {raw.dtype} of shape {raw.shape}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"corrupted header ({exc})")
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        fail(f"not an arrayprop checkpoint (format {found!r}, expected {FORMAT_NAME!r})")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        fail(f"invalid format version {version!r}")
    if version > FORMAT_VERSION:
        fail(
            f"format version {version} is newer than this arrayprop reads (up to "
            f"{FORMAT_VERSION}); upgrade arrayprop"
        )
    return header


def _check_architecture(arch: dict[str, Any], arrays: dict, fail) -> None:
    """The Dense sizes of ``arch`` must be the shapes of the stored weights, checked before
    the model is built: a checksum proves integrity, not authorship, and an edited header
    asking for a Dense(100000, 100000) must not make load allocate 75 GiB first."""
    layers = arch.get("layers") if arch.get("type") == "Sequential" else [arch]
    if not isinstance(layers, list) or not all(isinstance(c, dict) for c in layers):
        fail("cannot rebuild the architecture (malformed layer list)")
    needed = []
    for c in layers:
        if c.get("type") == "Dense":
            needed += [(c.get("in_features"), c.get("out_features")), (c.get("out_features"),)]
    stored = sum(1 for name in arrays if name.startswith("param."))
    if stored != len(needed):
        fail(f"holds {stored} parameter arrays, its architecture has {len(needed)}")
    for i, shape in enumerate(needed):
        array = arrays.get(f"param.{i}")
        if array is None:
            fail(f"missing array param.{i}")
        if tuple(array.shape) != shape:
            fail(f"parameter {i} has shape {tuple(array.shape)}, its architecture needs {shape}")


def _set_weights(model: Layer, header: dict[str, Any], arrays: dict, be: Backend, fail) -> None:
    params = model.parameters()
    saved = header.get("parameters", [])
    if len(saved) != len(params):
        fail(f"holds {len(saved)} parameter arrays, its architecture has {len(params)}")
    for i, p in enumerate(params):
        host = arrays.get(f"param.{i}")
        if host is None:
            fail(f"missing array param.{i} ({p.name})")
        if tuple(host.shape) != p.shape:
            fail(
                f"parameter {p.name or i} has shape {tuple(host.shape)}, its architecture needs "
                f"{p.shape}"
            )
        if host.dtype.kind != "f":
            fail(f"parameter {p.name or i} has dtype {host.dtype}, expected floating point")
        p.data = be.asarray(host, dtype=be.dtype)
        p.grad = None


def _optimizer_state(
    header: dict[str, Any], arrays: dict, n_params: int, fail
) -> dict[str, Any] | None:
    opt = header.get("optimizer")
    if opt is None:
        return None
    names = opt.get("state", [])
    if len(names) != n_params:
        fail(f"optimizer state covers {len(names)} parameters, the model has {n_params}")
    state = []
    for i, entry in enumerate(names):
        try:
            state.append({name: arrays[f"optim.{i}.{name}"] for name in entry})
        except KeyError as exc:
            fail(f"missing optimizer array {exc.args[0]}")
    return {**opt, "state": state}
