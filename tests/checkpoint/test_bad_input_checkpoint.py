"""Bad checkpoint files and bad save / restore calls: the rows of the bad-input table
for ``arrayprop.checkpoint``.

The harness (``Case``, ``check``) is tests/badinput.py.
"""

from __future__ import annotations

import json

import numpy as np

import arrayprop as ap
import badinput
from arrayprop import checkpoint as ckpt
from arrayprop.checkpoint.format import canonical_json, checksum
from arrayprop.errors import (
    CheckpointError,
)
from badinput import Case, small_mlp

# -- builders of bad arguments ------------------------------------------------------------


def _saved(be, tmp, sizes=(3, 4, 2)):
    path = tmp / "saved.npz"
    model = small_mlp(be, sizes)
    ckpt.save(model, path, optimizer=ap.Adam(model.parameters()))
    return path


def _newer_version(tmp):
    path = tmp / "newer.npz"
    ckpt.save(ap.mlp([2, 2], seed=0, backend="numpy"), path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    header["version"] = ckpt.FORMAT_VERSION + 1
    header["checksum"] = checksum(header, arrays)  # a valid file of a future version
    arrays["header"] = np.frombuffer(canonical_json(header), dtype=np.uint8)
    np.savez(path, **arrays)
    return ckpt.load(path)


def _write(tmp, name, data: bytes):
    path = tmp / name
    path.write_bytes(data)
    return path


# -- the rows -----------------------------------------------------------------------------

CASES = [
    # checkpoints
    Case(
        "checkpoint-load-plain-npz",
        lambda be, tmp: (np.savez(tmp / "plain.npz", w=np.ones(3)), ckpt.load(tmp / "plain.npz")),
        CheckpointError,
        r"plain.npz: not an arrayprop checkpoint \(no 'header' member; a foreign .npz\?\)",
    ),
    Case(
        "checkpoint-load-random-bytes",
        lambda be, tmp: ckpt.load(_write(tmp, "noise.npz", bytes(range(256)) * 4)),
        CheckpointError,
        r"noise.npz: not an arrayprop checkpoint \(not an .npz / zip file\)",
    ),
    Case(
        "checkpoint-load-truncated",
        lambda be, tmp: ckpt.load(_write(tmp, "cut.npz", _saved(be, tmp).read_bytes()[:-100])),
        CheckpointError,
        r"cut.npz: truncated or corrupted file",
    ),
    Case(
        "checkpoint-load-newer-version",
        lambda be, tmp: _newer_version(tmp),
        CheckpointError,
        r"newer.npz: format version 2 is newer than this arrayprop reads \(up to 1\)",
    ),
    Case(
        "checkpoint-load-missing",
        lambda be, tmp: ckpt.load(tmp / "nowhere.npz"),
        FileNotFoundError,
        r"No such file or directory",
    ),
    Case(
        "checkpoint-load-onto-unknown-backend",
        lambda be, tmp: ckpt.load(_saved(be, tmp), backend="tensorflow"),
        ValueError,
        r"unknown backend 'tensorflow'",
    ),
    Case(
        "checkpoint-save-model-without-parameters",
        lambda be, tmp: ckpt.save(ap.Sequential(ap.Tanh()), tmp / "x.npz"),
        CheckpointError,
        r"cannot checkpoint Sequential\(Tanh\(\)\) to .*x.npz: it has no parameters",
    ),
    Case(
        "checkpoint-save-extra-not-json",
        lambda be, tmp: ckpt.save(small_mlp(be), tmp / "x.npz", extra={"when": object()}),
        CheckpointError,
        r"header is not JSON-able",
    ),
    Case(
        "checkpoint-restore-other-optimizer",
        lambda be, tmp: ckpt.restore_optimizer(
            ap.SGD(small_mlp(be).parameters()), ckpt.load(_saved(be, tmp), backend=be)
        ),
        CheckpointError,
        r"saved.npz: SGD: expected a state dict of 'sgd', got 'adam'",
    ),
]


@badinput.backend_rows(CASES)
def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
    badinput.check(case, backend, tmp_path)
