"""Loading a checkpoint: parse and verify the file, check the architecture against the stored
weights, rebuild the model on any backend; and :func:`restore_optimizer`.

Nothing is unpickled (``allow_pickle=False``), and the checksum is verified before anything is
built. The layout is described in :mod:`arrayprop.checkpoint.format`.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from arrayprop.backends import Backend, backend_of, get_backend
from arrayprop.backends.base import FLOAT_DTYPES
from arrayprop.checkpoint.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER,
    MAX_HEADER_BYTES,
    ZIP_MAGIC,
    checksum,
)
from arrayprop.errors import CheckpointError
from arrayprop.nn.layer import Layer
from arrayprop.nn.registry import LAYER_TYPES, layer_from_config

__all__ = ["Checkpoint", "load", "restore_optimizer"]


@dataclass
class Checkpoint:
    """What :func:`load` returns.

    Attributes
    ----------
    model : Layer
        The rebuilt model (usually a :class:`~arrayprop.nn.Sequential`) on the requested
        backend, with the saved weights.
    optimizer_state : dict or None
        The saved ``optimizer.state_dict()``: ``type``, ``hyperparameters``, ``lr``, ``steps``
        and ``state``, a list (one entry per model parameter) of ``{name: host ndarray}``; pass
        it to :func:`restore_optimizer`.
    extra : dict
        The ``extra`` given to :func:`~arrayprop.checkpoint.save`; its arrays come back as
        host NumPy arrays.
    info : dict
        File facts: ``path``, ``version``, ``arrayprop_version``, ``backend``, ``device`` and
        ``dtype`` the model was saved from, ``created`` (ISO 8601 UTC) and ``architecture``.
    """

    model: Layer
    optimizer_state: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def load(
    path: str | os.PathLike[str],
    backend: str | Backend | None = None,
    device: Any = None,
    dtype: Any = None,
) -> Checkpoint:
    """Read a checkpoint written by :func:`~arrayprop.checkpoint.save`; rebuild its model anywhere.

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
    _check_architecture(arch, header, arrays, fail)
    saved_dtype = header.get("dtype")
    if saved_dtype not in FLOAT_DTYPES:
        fail(f"header field 'dtype' must be one of {', '.join(FLOAT_DTYPES)}, got {saved_dtype!r}")
    extra = _extra(header, arrays, fail)
    opt = _optimizer_header(header, arrays, fail)
    be = get_backend(backend, device=device, dtype=saved_dtype if dtype is None else dtype)
    try:
        model = layer_from_config(arch, backend=be)
    except Exception as exc:
        # A crafted config can trip any check of any layer's constructor.
        fail(f"cannot rebuild the architecture ({type(exc).__name__}: {exc})")
    _set_state(model, header, arrays, fail)
    optimizer_state = _optimizer_state(opt, arrays, len(model.parameters()), fail)
    info = {
        "path": str(path),
        "version": header["version"],
        "arrayprop_version": header.get("arrayprop_version"),
        "backend": header.get("backend"),
        "device": header.get("device"),
        "dtype": saved_dtype,
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
    # Our own handle (np.load leaks the one it opens when the zip directory is unreadable),
    # opened without blocking so that a FIFO cannot hang us, and refused unless a regular file.
    f, size = _open_regular(path, fail)
    with f:
        if f.read(4) != ZIP_MAGIC:
            fail("not an arrayprop checkpoint (not an .npz / zip file)")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                header, arrays = _read_members(zf, size, fail)
        except CheckpointError:
            raise
        except Exception as exc:
            # Whatever the zip or .npy parser trips over in a damaged file (BadZipFile, CRC and
            # EOF errors, bad .npy headers) means the same to the caller.
            fail(f"truncated or corrupted file ({type(exc).__name__}: {exc})")
    if header.get("checksum") != checksum(header, arrays):
        fail("checksum mismatch: the file is corrupted (or was edited after saving)")
    return header, arrays


def _open_regular(path: Path, fail) -> tuple[Any, int]:
    """``path`` opened for reading, and its size; a :class:`CheckpointError` unless it is a
    regular file. Opened with ``O_NONBLOCK`` where it exists: a plain open of a FIFO waits
    for a writer forever."""
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            fail(f"not a regular file ({kind}); a checkpoint is a file")
        if nonblock:
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return f, os.fstat(f.fileno()).st_size


def _read_members(
    zf: zipfile.ZipFile, size: int, fail
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Check every member's declared size against the file before reading any; then read the
    header, and the arrays it lists, each into an array no larger than its member."""
    infos = zf.infolist()
    members: dict[str, zipfile.ZipInfo] = {}
    declared = 0
    for info in infos:
        name = info.filename
        if info.compress_type != zipfile.ZIP_STORED:
            fail(
                f"member {name!r} is compressed (zip method {info.compress_type}); arrayprop "
                "writes only stored members and refuses others, which could inflate to far "
                "more memory than the file holds"
            )
        if info.flag_bits & 0x1:
            fail(f"member {name!r} is encrypted")
        if info.file_size != info.compress_size:
            fail(f"member {name!r} declares {info.file_size} bytes stored in {info.compress_size}")
        if not name.endswith(".npy"):
            fail(f"corrupted or foreign file: member {name!r} is not a .npy array")
        if name[:-4] in members:
            fail(f"member {name!r} appears twice")
        members[name[:-4]] = info
        declared += info.file_size
    if declared > size:
        fail(
            f"its members declare {declared} bytes in all, more than the file's {size} bytes "
            "(overlapping or forged zip entries)"
        )
    if HEADER not in members:
        fail(f"not an arrayprop checkpoint (no {HEADER!r} member; a foreign .npz?)")
    header = _parse_header(_read_npy(zf, members[HEADER], fail, MAX_HEADER_BYTES), fail)
    listed = header.get("arrays")
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        fail("header field 'arrays' must be a list of array names")
    missing = sorted(set(listed) - set(members))
    if missing:
        fail(f"missing arrays {missing} (truncated or edited file)")
    unexpected = sorted(set(members) - set(listed) - {HEADER})
    if unexpected:
        fail(f"unexpected arrays {unexpected} not listed in the header")
    arrays = {name: _read_npy(zf, members[name], fail) for name in listed}
    return header, arrays


#: Bytes copied out of a member per read while filling its array.
_CHUNK = 1 << 18


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, fail, limit: int | None = None):
    """The array of one stored ``.npy`` member, allocated only once its declared shape and
    dtype are known to fill exactly the member's bytes (and ``limit``, when given)."""
    name = info.filename
    with zf.open(info) as m:
        try:
            version = np.lib.format.read_magic(m)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
            else:
                fail(
                    f"member {name!r} is a .npy of version {version}, which arrayprop never writes"
                )
        except ValueError as exc:
            fail(f"corrupted or foreign file: member {name!r} is not a .npy array ({exc})")
        if dtype.hasobject or dtype.kind not in "biuf":
            fail(
                f"corrupted or foreign file: member {name!r} has dtype {dtype}; checkpoints "
                "hold only numeric arrays "
                "(object arrays would need pickle)"
            )
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        data = info.file_size - m.tell()
        if nbytes != data:
            fail(
                f"member {name!r} declares an array of shape {shape} and dtype {dtype} "
                f"({nbytes} bytes) but holds {data} bytes of data"
            )
        if limit is not None and nbytes > limit:
            fail(f"member {name!r} has {nbytes} bytes, more than the {limit} allowed")
        flat = np.empty(count, dtype=dtype)
        view = memoryview(flat.view(np.uint8))
        pos = 0
        while pos < nbytes:  # the last read also checks the member's CRC
            chunk = m.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                fail(f"truncated or corrupted file (member {name!r} ends early)")
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
    if fortran:
        return flat.reshape(shape[::-1]).transpose()
    return flat.reshape(shape)


def _parse_header(raw: np.ndarray, fail) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        fail(f"header must be a 1-D uint8 array, got {raw.dtype} of shape {raw.shape}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        fail(f"corrupted header ({type(exc).__name__}: {exc})")
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


def _check_architecture(arch: dict[str, Any], header: dict[str, Any], arrays: dict, fail) -> None:
    """The stored parameters must be the ones the header lists, and every layer of ``arch`` whose
    class states its shapes (:meth:`~arrayprop.Layer.state_shapes`: every built-in layer) must
    find its parameters and buffers stored under their names with those shapes — checked before
    the model is built: a checksum proves integrity, not authorship, and an edited header asking
    for a Dense(100000, 100000) or a Conv2D of 10⁵ channels must not make load allocate 75 GiB
    first. (A layer class of the user's own that states nothing is built as it is.)"""
    shapes, kinds = {}, {}
    for kind, key in (("param", "parameters"), ("buffer", "buffers")):
        listed = header.get(key, [] if kind == "buffer" else None)
        if not isinstance(listed, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) for e in listed
        ):
            fail(f"header has no list of named {key}")
        stored = sum(1 for name in arrays if name.startswith(f"{kind}."))
        if stored != len(listed):
            fail(f"holds {stored} {kind} arrays, its header lists {len(listed)}")
        for i, entry in enumerate(listed):
            array = arrays.get(f"{kind}.{i}")
            if array is None:
                fail(f"missing array {kind}.{i} ({entry['name']})")
            shapes[entry["name"]] = tuple(array.shape)
            kinds[entry["name"]] = "parameter" if kind == "param" else "buffer"
    for where, config in _layer_configs(arch, "", fail):
        cls = LAYER_TYPES.get(config.get("type"))
        if cls is None:
            continue  # an unknown type: layer_from_config names it
        try:
            wanted = cls.state_shapes(config)
        except (TypeError, ValueError) as exc:
            fail(f"layer {where or '(the model)'}: malformed {config.get('type')} config ({exc})")
        for attr, shape in (wanted or {}).items():
            name = f"{where}.{attr}" if where else attr
            if name not in shapes:
                fail(f"its architecture needs a parameter or buffer {name}, which it does not hold")
            if shapes[name] != tuple(shape):
                fail(
                    f"{kinds[name]} {name} has shape {shapes[name]}, its architecture needs "
                    f"{tuple(shape)}"
                )


def _layer_configs(arch: Any, where: str, fail) -> list[tuple[str, dict[str, Any]]]:
    """(path, config) of every layer inside a (nested) Sequential architecture."""
    if not isinstance(arch, dict):
        fail("cannot rebuild the architecture (malformed layer config)")
    if arch.get("type") != "Sequential":
        return [(where, arch)]
    layers = arch.get("layers")
    if not isinstance(layers, list):
        fail("cannot rebuild the architecture (malformed layer list)")
    found = []
    for i, child in enumerate(layers):
        found += _layer_configs(child, f"{where}.{i}" if where else str(i), fail)
    return found


def _set_state(model: Layer, header: dict[str, Any], arrays: dict, fail) -> None:
    """Load the stored parameters and buffers into ``model`` by name."""
    for kind, named in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        named = dict(named)
        listed = header.get("parameters" if kind == "param" else "buffers", [])
        if not isinstance(listed, list):
            fail(f"header field {kind}s is not a list")
        names = [e.get("name") if isinstance(e, dict) else None for e in listed]
        if sorted(map(str, names)) != sorted(named):
            fail(f"holds {kind}s {names}, its architecture has {list(named)}")
        state = {}
        for i, name in enumerate(names):
            host = arrays.get(f"{kind}.{i}")
            if host is None:
                fail(f"missing array {kind}.{i} ({name})")
            item = named[name]
            if tuple(host.shape) != item.shape:
                fail(
                    f"{kind} {name} has shape {tuple(host.shape)}, its architecture needs "
                    f"{item.shape}"
                )
            if kind == "param" and host.dtype.kind != "f":
                fail(f"parameter {name} has dtype {host.dtype}, expected floating point")
            state[name] = host
        for name, item in named.items():
            be = backend_of(item.data)
            floating = state[name].dtype.kind == "f"
            dtype = model.backend.dtype if floating else None
            arr = be.asarray(state[name], dtype=dtype)
            item.data = be.xp.asarray(arr, copy=True)
            if kind == "param":
                item.grad = None


def _extra(header: dict[str, Any], arrays: dict, fail) -> dict[str, Any]:
    """``extra`` of the header, with the arrays ``extra_arrays`` names put back in."""
    extra = header.get("extra", {})
    if not isinstance(extra, dict):
        fail(f"header field 'extra' must be an object, got {type(extra).__name__}")
    names = header.get("extra_arrays", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        fail("header field 'extra_arrays' must be a list of names")
    extra = dict(extra)
    for name in names:
        if f"extra.{name}" not in arrays:
            fail(
                f"header field 'extra_arrays' names {name!r}, but the file has no array "
                f"extra.{name}"
            )
        extra[name] = arrays[f"extra.{name}"]
    return extra


def _optimizer_header(header: dict[str, Any], arrays: dict, fail) -> dict[str, Any] | None:
    """The header's ``optimizer`` entry, its fields' types checked (values are checked by the
    optimizer that restores them)."""
    opt = header.get("optimizer")
    if opt is None:
        return None
    if not isinstance(opt, dict):
        fail(f"header field 'optimizer' must be an object or null, got {type(opt).__name__}")
    kinds = {"type": (str,), "hyperparameters": (dict,), "steps": (int,), "lr": (int, float)}
    for key, types in kinds.items():
        value = opt.get(key)
        if key == "lr" and key not in opt:
            continue  # older files: the initial lr
        if not isinstance(value, types) or isinstance(value, bool):
            fail(f"header field 'optimizer.{key}' has the wrong type: {value!r}")
    names = opt.get("state")
    if not isinstance(names, list) or not all(
        isinstance(entry, list) and all(isinstance(n, str) for n in entry) for entry in names
    ):
        fail("header field 'optimizer.state' must be a list (per parameter) of lists of names")
    for i, entry in enumerate(names):
        for name in entry:
            if f"optim.{i}.{name}" not in arrays:
                fail(f"header field 'optimizer.state' names optim.{i}.{name}, which the file lacks")
    return opt


def _optimizer_state(
    opt: dict[str, Any] | None, arrays: dict, n_params: int, fail
) -> dict[str, Any] | None:
    if opt is None:
        return None
    names = opt["state"]
    if len(names) != n_params:
        fail(f"optimizer state covers {len(names)} parameters, the model has {n_params}")
    state = [{name: arrays[f"optim.{i}.{name}"] for name in entry} for i, entry in enumerate(names)]
    return {**opt, "state": state}
