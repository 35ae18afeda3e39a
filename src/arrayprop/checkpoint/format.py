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
ways). :mod:`.write` writes files atomically; :mod:`.read` verifies them before building
anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER",
    "MAX_HEADER_BYTES",
    "ZIP_MAGIC",
    "canonical_json",
    "checksum",
]

FORMAT_NAME = "arrayprop-checkpoint"
#: Bumped whenever a reader of an older version could not read the new layout.
FORMAT_VERSION = 1

#: The member holding the JSON header.
HEADER = "header"
#: The largest header (its JSON) :func:`~arrayprop.checkpoint.save` writes and
#: :func:`~arrayprop.checkpoint.load` reads: parsed JSON takes several times its text in memory,
#: so a file's header is bounded by this rather than by the file's size. Large data goes in
#: ``extra`` as arrays.
MAX_HEADER_BYTES = 8 * 2**20
#: The first bytes of every zip file (and so of every checkpoint).
ZIP_MAGIC = b"PK\x03\x04"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


def canonical_json(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON with sorted keys and no spaces: the bytes the checksum covers."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode("utf-8")


def checksum(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the header minus its checksum, then every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(canonical_json({k: v for k, v in header.items() if k != "checksum"}))
    for name in sorted(arrays):
        if name == HEADER:
            continue
        arr = arrays[name]
        h.update(canonical_json([name, arr.dtype.str, list(arr.shape)]))
        # The bytes in C order, hashed in place (tobytes would copy every array once more).
        h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return "sha256:" + h.hexdigest()
