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
import signal
import subprocess
import sys
import time

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


# -- SIGKILL during save ---------------------------------------------------------------------

#: A process that forks savers on request. Forking from a small single-threaded process costs a
#: few ms, where starting Python with arrayprop costs most of a second: the test can afford
#: dozens of kills. Each saver writes versions base, base + 1, ... with every weight equal to
#: the version number, until it is killed.
SAVER_SERVER = """
import os, signal, sys
from arrayprop import checkpoint, mlp

path = sys.argv[1]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed savers
model = mlp([256, 256, 256], seed=0, backend="numpy", dtype="float64")  # 1 MiB: a save ~ms
params = model.parameters()
print("ready", flush=True)
for line in sys.stdin:
    base = int(line)
    pid = os.fork()
    if pid == 0:
        version = base
        while True:
            for p in params:
                p.data[...] = version
            checkpoint.save(model, path, extra={"version": version})
            version += 1
    print(pid, flush=True)
"""

KILL_TRIALS = 40


def _child_env() -> dict:
    src = os.path.dirname(os.path.dirname(ap.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    # One BLAS thread: the server forks, and forking a process with idle BLAS threads is unsafe.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.001)
    raise AssertionError(f"saver {pid} survived SIGKILL for {timeout} s")


@posix_only
def test_sigkill_at_random_moments_of_saving_never_breaks_the_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    model = ap.mlp([256, 256, 256], seed=0, backend="numpy", dtype="float64")
    for p in model.parameters():
        p.data[...] = 0.0
    ckpt.save(model, path, extra={"version": 0})
    script = tmp_path / "saver_server.py"
    script.write_text(SAVER_SERVER)
    server = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    rng = np.random.default_rng(2024)
    previous, passed, mid_save, advanced = 0, 0, 0, 0
    try:
        assert server.stdout.readline().strip() == "ready"
        for trial in range(1, KILL_TRIALS + 1):
            base = trial * 1_000_000
            server.stdin.write(f"{base}\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.06))
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)

            left = _temporaries(path)
            mid_save += any(f".{pid}." in t.name for t in left)
            # Each save removes the temporaries of dead savers: never more than the last one's.
            assert len(left) <= 1, left
            loaded = ckpt.load(path)
            version = loaded.extra["version"]
            # The last complete save of this saver, or the previous file if it never finished.
            assert version == previous or base <= version < base + 1_000_000, version
            for p in loaded.model.parameters():
                assert np.all(loaded.model.backend.to_host(p.data) == version)
            advanced += version != previous
            previous = version
            passed += 1
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        server.stdout.close()
    assert passed == KILL_TRIALS
    # The trials must have exercised both kinds of kill: between saves and inside one.
    assert mid_save >= KILL_TRIALS // 4, mid_save
    assert advanced >= KILL_TRIALS // 4, advanced
    ckpt.save(model, path)
    assert _temporaries(path) == []
    print(f"kill trials passed: {passed}/{KILL_TRIALS} ({mid_save} killed mid-save)")
