"""scripts/gpu_once.sh on the CPU: its plan, its no-GPU exit and its limits, with a fake
``nvidia-smi`` on PATH (the GPU stages themselves need a GPU)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import arrayprop as ap

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_once.sh"
BUDGET = 9 * 60
OUTPUTS = {"summary.md", "environment.json", "tables.md", "bench.json", "logs.tar.gz"}


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path, *args, gpu=True, python=sys.executable, **env_extra):
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    if gpu:
        _executable(fake / "nvidia-smi", '#!/bin/sh\necho "NVIDIA H200, 143771 MiB, 570.86, 9.0"\n')
    else:  # what nvidia-smi says on a machine without a usable driver
        _executable(
            fake / "nvidia-smi",
            "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the "
            'NVIDIA driver."\nexit 9\n',
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_", "ARRAYPROP_"))}
    env.update(PATH=f"{fake}:{env['PATH']}", PYTHON=str(python), GPU_SITE=str(tmp_path / "site"))
    env["PYTHONPATH"] = str(Path(ap.__file__).parents[1])
    env.update(env_extra)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_script_parses():
    out = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_stage_limits_fit_nine_minutes(tmp_path):
    out = _run(tmp_path, "--plan")
    assert out.returncode == 0, out.stderr
    plan = dict(line.split() for line in out.stdout.splitlines())
    total = int(plan.pop("total"))
    assert list(plan) == ["preflight", "compile", "unit", "graphs", "bench", "suites"]
    assert sum(map(int, plan.values())) == total <= BUDGET


def test_limits_over_the_budget_are_refused(tmp_path):
    out = _run(tmp_path, str(tmp_path / "out"), GPU_ONCE_LIMIT_SUITES="600")
    assert out.returncode == 2
    assert "more than 540s" in out.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_stage_is_refused(tmp_path):
    out = _run(tmp_path, str(tmp_path / "out"), GPU_ONCE_STAGES="tests")
    assert out.returncode == 2 and "unknown stage tests" in out.stderr


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_without_a_gpu_it_exits_3_with_at_most_5_files(tmp_path, where):
    out_dir = tmp_path / "out"
    if where == "argument":
        out = _run(tmp_path, str(out_dir), gpu=False)
    else:
        out = _run(tmp_path, gpu=False, GPU_OUT=str(out_dir))
    assert out.returncode == 3, out.stdout + out.stderr
    files = {p.name for p in out_dir.iterdir()}
    assert files == {"summary.md", "environment.json", "logs.tar.gz"}
    summary = (out_dir / "summary.md").read_text()
    assert "exit status 3 (no GPU)" in summary
    assert "| preflight | no GPU | 3 |" in summary
    assert (
        "couldn't communicate with the NVIDIA driver" in (out_dir / "environment.json").read_text()
    )


@pytest.mark.slow
def test_a_stage_is_killed_at_its_limit_and_fails_the_run(tmp_path):
    # A python that hangs in the compile check: the 2-second limit kills it.
    slow = tmp_path / "slowpython"
    hang = 'case "$*" in *cupy_compile_check*) sleep 60 ;; esac'
    _executable(slow, f'#!/bin/sh\n{hang}\nexec {sys.executable} "$@"\n')
    out_dir = tmp_path / "out"
    out = _run(
        tmp_path,
        str(out_dir),
        python=slow,
        GPU_ONCE_STAGES="compile",
        GPU_ONCE_LIMIT_COMPILE="2",
    )
    assert out.returncode == 1, out.stdout + out.stderr
    summary = (out_dir / "summary.md").read_text()
    assert "| preflight | passed | 0 |" in summary
    assert "| compile | timed out | 124 |" in summary
    files = {p.name for p in out_dir.iterdir()}
    assert files <= OUTPUTS and len(files) <= 5
    assert '"nvidia_smi": "NVIDIA H200, 143771 MiB' in (out_dir / "environment.json").read_text()
