"""The suite's own options (tests/conftest.py): ``--backend`` and ``--device``.

Each case runs pytest in a fresh interpreter on a one-test probe next to a copy of
tests/conftest.py, so that the options, the environment and the usage errors are those of a
real run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import arrayprop as ap

CONFTEST = Path(__file__).with_name("conftest.py")
PROBE = """
import os
import subprocess
import sys


def test_probe(backend):
    print(f"PROBE {backend.name} {backend.device}")
    # A subprocess (as the CLI tests start) sees no device setting from the suite.
    code = "import os; print('CHILD', os.environ.get('ARRAYPROP_DEVICE'))"
    print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
"""


def _run(tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARRAYPROP_")}
    env["PYTHONPATH"] = str(Path(ap.__file__).parents[1])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_device_option_sets_the_device_of_the_backend_fixture(tmp_path):
    out = _run(tmp_path, "--backend", "numpy", "--device", "cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PROBE numpy cpu" in out.stdout
    assert "CHILD None" in out.stdout


@pytest.mark.slow
def test_arrayprop_device_in_the_environment_is_refused(tmp_path):
    # Before the --device option, ARRAYPROP_DEVICE=cuda moved numpy too (and the CLI's
    # subprocesses): 27 false failures on the GPU machine. Now the run stops at once and says so.
    out = _run(tmp_path, "--backend", "numpy", env_extra={"ARRAYPROP_DEVICE": "cuda"})
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert "ARRAYPROP_DEVICE=cuda is set" in out.stderr
    assert "--device cuda" in out.stderr


@pytest.mark.slow
def test_a_device_a_selected_backend_lacks_is_a_usage_error(tmp_path):
    out = _run(tmp_path, "--backend", "numpy", "--device", "cuda")
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert "--device cuda: backend 'numpy' cannot use it" in out.stderr
