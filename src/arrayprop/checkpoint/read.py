"""Loading a checkpoint: parse and verify the file, check the architecture against the stored
weights, rebuild the model on any backend; and :func:`restore_optimizer`.

Nothing is unpickled (``allow_pickle=False``), and the checksum is verified before anything is
built. The layout is described in :mod:`arrayprop.checkpoint.format`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from arrayprop.backends import Backend, backend_of, get_backend
from arrayprop.checkpoint.format import FORMAT_NAME, FORMAT_VERSION, HEADER, ZIP_MAGIC, checksum
from arrayprop.errors import CheckpointError
from arrayprop.nn.layer import Layer
from arrayprop.nn.registry import layer_from_config

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
    be = get_backend(backend, device=device, dtype=header["dtype"] if dtype is None else dtype)
    try:
        model = layer_from_config(arch, backend=be)
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"cannot rebuild the architecture ({exc})")
    _set_state(model, header, arrays, fail)
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
        if f.read(4) != ZIP_MAGIC:
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
    if header.get("checksum") != checksum(header, arrays):
        fail("checksum mismatch: the file is corrupted (or was edited after saving)")
    return header, arrays


def _read_members(npz: Any, fail) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    names = set(npz.files)
    if HEADER not in names:
        fail(f"not an arrayprop checkpoint (no {HEADER!r} member; a foreign .npz?)")
    header = _parse_header(npz[HEADER], fail)
    listed = header.get("arrays")
    if not isinstance(listed, list):
        fail("header does not list its arrays")
    missing = sorted(set(listed) - names)
    if missing:
        fail(f"missing arrays {missing} (truncated or edited file)")
    unexpected = sorted(names - set(listed) - {HEADER})
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


def _check_architecture(arch: dict[str, Any], header: dict[str, Any], arrays: dict, fail) -> None:
    """The stored parameters must be the ones the header lists, and the Dense sizes of ``arch``
    the shapes stored under their names — checked before the model is built: a checksum proves
    integrity, not authorship, and an edited header asking for a Dense(100000, 100000) must not
    make load allocate 75 GiB first."""
    listed = header.get("parameters")
    if not isinstance(listed, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in listed
    ):
        fail("header has no list of named parameters")
    stored = sum(1 for name in arrays if name.startswith("param."))
    if stored != len(listed):
        fail(f"holds {stored} parameter arrays, its header lists {len(listed)}")
    shapes = {}
    for i, entry in enumerate(listed):
        array = arrays.get(f"param.{i}")
        if array is None:
            fail(f"missing array param.{i} ({entry['name']})")
        shapes[entry["name"]] = tuple(array.shape)
    for where, config in _dense_configs(arch, "", fail):
        for attr, shape in (
            ("weight", (config.get("in_features"), config.get("out_features"))),
            ("bias", (config.get("out_features"),)),
        ):
            name = f"{where}.{attr}" if where else attr
            if name not in shapes:
                fail(f"its architecture needs a parameter {name}, which it does not hold")
            if shapes[name] != shape:
                fail(f"parameter {name} has shape {shapes[name]}, its architecture needs {shape}")


def _dense_configs(arch: Any, where: str, fail) -> list[tuple[str, dict[str, Any]]]:
    """(path, config) of every Dense inside a (nested) Sequential architecture."""
    if not isinstance(arch, dict):
        fail("cannot rebuild the architecture (malformed layer config)")
    if arch.get("type") == "Dense":
        return [(where, arch)]
    if arch.get("type") != "Sequential":
        return []
    layers = arch.get("layers")
    if not isinstance(layers, list):
        fail("cannot rebuild the architecture (malformed layer list)")
    found = []
    for i, child in enumerate(layers):
        found += _dense_configs(child, f"{where}.{i}" if where else str(i), fail)
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
