"""What an installed arrayprop holds: the wheel built from this checkout carries the license,
``py.typed``, the benchmark's NumPy reference loop and its metadata, builds without setuptools
deprecation warnings, and an ``arrayprop bench`` run from it, outside any checkout, times the
reference loop and names no git revision."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What building the wheel needs from the checkout.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel built from a copy of this checkout, pip's verbose build log)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "arrayprop"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
            )
        else:
            shutil.copy2(path, src / name)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-v",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = run.stdout + run.stderr
    if run.returncode != 0 and re.search(r"No matching distribution found for setuptools", log):
        pytest.skip("no package index here: the isolated build cannot get setuptools>=77")
    assert run.returncode == 0, log[-3000:]
    (whl,) = (tmp / "dist").glob("arrayprop-*.whl")
    return whl, log


@pytest.mark.slow
def test_the_build_prints_no_deprecation_warning(wheel):
    _, log = wheel
    assert "Deprecat" not in log and "deprecat" not in log, [
        line for line in log.splitlines() if "eprecat" in line
    ]


@pytest.mark.slow
def test_the_wheel_ships_license_types_and_the_reference_loop(wheel):
    whl, _ = wheel
    names = zipfile.ZipFile(whl).namelist()
    for member in ("arrayprop/py.typed", "arrayprop/bench/reference.py"):
        assert member in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.slow
def test_the_metadata_names_license_dependencies_urls_and_classifiers(wheel):
    whl, _ = wheel
    with zipfile.ZipFile(whl) as z:
        meta = email.message_from_bytes(
            z.read(next(n for n in z.namelist() if n.endswith("METADATA")))
        )
    assert meta["License-Expression"] == "MIT"
    assert any(r.startswith("threadpoolctl") for r in meta.get_all("Requires-Dist"))
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the expression says it


@pytest.mark.slow
def test_an_installed_bench_times_the_reference_outside_a_checkout(wheel, tmp_path):
    whl, _ = wheel
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(whl),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run(
        [
            sys.executable, "-m", "arrayprop", "bench", "--configs", "tiny", "--no-peer",
            "--repeat", "2", "--warmup", "1", "--max-time", "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert str(target) in subprocess.run(
        [sys.executable, "-c", "import arrayprop; print(arrayprop.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "numpy-ref" in out and "skipping numpy-ref" not in out
    assert "git None" not in out and "(not a git checkout)" in out
