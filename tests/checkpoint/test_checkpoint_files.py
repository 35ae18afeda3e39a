"""Checkpoint files as files: the temporaries of other saves, paths that are not regular files,
permission bits, and OSError messages that name the checkpoint.

- The stale-temporary sweep of a save to ``m.npz`` removes only the temporaries of earlier saves
  to ``m.npz`` whose writer is dead, never those of a save to a longer name such as
  ``m.npz.99999`` (whose own name field then looks like a pid).
- ``load`` refuses a FIFO, a directory or a device at once (a FIFO used to block forever).
- A new checkpoint gets 0666 less the umask, like any new file; one that replaces a file keeps
  that file's permission bits.
- When writing fails, the OSError keeps its class and errno but names the target, not the
  hidden temporary.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ckpt
from arrayprop.checkpoint import write as ck_write
from arrayprop.errors import CheckpointError

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs pids, FIFOs and umask")


def _model():
    return ap.mlp([3, 4, 2], seed=0, backend="numpy")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return int(out)


# -- the stale-temporary sweep -------------------------------------------------------------------


@posix_only
def test_the_sweep_leaves_the_temporaries_of_saves_to_other_names_alone(tmp_path):
    path = tmp_path / "m.npz"
    dead, live = _dead_pid(), os.getppid()
    # Live temporaries of saves to names that extend "m.npz": the field after ".m.npz." is
    # part of *their* name (a dead pid's digits included), not a writer's pid.
    foreign = [
        f".m.npz.{dead}.{live}.k2j4x9q1.tmp",  # a save to m.npz.<dead> by a live process
        f".m.npz.{dead}.bak.{live}.k2j4x9q1.tmp",  # a save to m.npz.<dead>.bak
        f".m.npz.{dead}.tmp.{live}.k2j4x9q1.tmp",  # a save to m.npz.<dead>.tmp
        f".m.npz.{dead}.tmp",  # not a temporary arrayprop names
    ]
    stale = tmp_path / f".m.npz.{dead}.a1b2c3d4.tmp"  # a dead writer's save to m.npz
    for name in foreign:
        (tmp_path / name).write_bytes(b"PK\x03\x04 being written")
    stale.write_bytes(b"PK\x03\x04 half a zip")

    ckpt.save(_model(), path)

    assert not stale.exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*foreign, "m.npz"])


# -- paths that are not regular files -------------------------------------------------------------


@posix_only
def test_load_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def load():
        try:
            ckpt.load(fifo)
            result.append(None)
        except BaseException as exc:  # handed to the test thread
            result.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():
        # Unblock the reader (a writer opens the FIFO, then closes it: EOF), then fail.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(timeout=10)
        pytest.fail("load blocked on a FIFO")
    assert isinstance(result[0], CheckpointError), result
    assert "pipe.npz: not a regular file (a FIFO, device or socket)" in str(result[0])


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_load_refuses_what_is_not_a_regular_file(tmp_path, kind):
    if kind == "device":
        if not os.path.exists(os.devnull) or os.name != "posix":
            pytest.skip("no character device here")
        target = os.devnull
        match = "not a regular file"
    else:
        target = tmp_path / "dir.npz"
        target.mkdir()
        match = r"dir.npz: not a regular file \(a directory\)"
    with pytest.raises(CheckpointError, match=match):
        ckpt.load(target)


# -- permission bits -------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000])
def test_a_new_checkpoint_gets_the_mode_of_any_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        ckpt.save(_model(), tmp_path / "m.npz")
        (tmp_path / "plain").write_bytes(b"")  # what open() gives under this umask
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o664])
def test_a_replaced_checkpoint_keeps_its_mode(tmp_path, mode):
    path = tmp_path / "m.npz"
    ckpt.save(_model(), path)
    os.chmod(path, mode)
    ckpt.save(ap.mlp([3, 4, 2], seed=1, backend="numpy"), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    np.testing.assert_array_equal(
        ckpt.load(path).model[0].weight.data,
        ap.mlp([3, 4, 2], seed=1, backend="numpy")[0].weight.data,
    )


# -- OSError messages ----------------------------------------------------------------------------


def _fail_writing(monkeypatch):
    def full(zf, name, arr):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck_write, "_write_member", full)


@pytest.mark.parametrize(
    ("case", "exc_type"),
    [
        ("directory-missing", FileNotFoundError),  # creating the temporary fails
        ("target-is-a-directory", IsADirectoryError),  # the rename fails
        ("disk-full", OSError),  # writing fails
    ],
)
def test_an_oserror_names_the_checkpoint_not_the_temporary(tmp_path, monkeypatch, case, exc_type):
    path = tmp_path / "m.npz"
    if case == "directory-missing":
        path = tmp_path / "nowhere" / "m.npz"
    elif case == "target-is-a-directory":
        path.mkdir()
    else:
        _fail_writing(monkeypatch)
    with pytest.raises(exc_type) as info:
        ckpt.save(_model(), path)
    exc = info.value
    assert exc.filename == str(path), exc
    assert ".tmp" not in str(exc) and str(path) in str(exc), exc
    assert exc.errno is not None and exc.strerror in str(exc)
    # ... and nothing is left behind.
    assert not list(path.parent.glob(".*.tmp")) if path.parent.exists() else True
