"""Crashes never cost a user their checkpoint, and an untrusted file never runs code.

- A process saving checkpoints in a loop is SIGKILLed at random moments, many times: after every
  kill the file at the path loads and holds exactly one of the versions that were saved.
- Temporaries a killed writer leaves behind are ignored by ``load`` and removed by the next save.
- Truncated, bit-flipped and foreign files are refused with CheckpointError (or, for a flip in a
  byte of zip bookkeeping numpy never reads, load exactly what was saved).
- A pickle payload inside a file is never unpickled.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ckpt

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs fork, SIGKILL and pids")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def _temporaries(path) -> list:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


# -- temporaries left by a killed writer -------------------------------------------------------


@posix_only
def test_load_ignores_and_the_next_save_removes_temporaries_of_dead_writers(tmp_path):
    path = tmp_path / "model.npz"
    model = ap.mlp([3, 4, 2], seed=0, backend="numpy")
    ckpt.save(model, path)
    # What SIGKILL mid-save leaves: a half-written temporary named after the dead writer ...
    stale = tmp_path / f".model.npz.{_dead_pid()}.k2j4.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")
    # ... and one of a writer that is still running (this test's parent process stands in).
    live = tmp_path / f".model.npz.{os.getppid()}.x9q1.tmp"
    live.write_bytes(b"PK\x03\x04 being written")
    other = tmp_path / f".other.npz.{_dead_pid()}.a1b2.tmp"
    other.write_bytes(b"not ours")

    loaded = ckpt.load(path)
    np.testing.assert_array_equal(loaded.model[0].weight.data, model[0].weight.data)

    ckpt.save(model, path)
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert _temporaries(path) == [live]
