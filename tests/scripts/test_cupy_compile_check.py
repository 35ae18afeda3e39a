"""The NVRTC compile check (scripts/cupy_compile_check.py, ``make compile-check``) covers every
kernel the CuPy fast module launches; the compiling itself needs CuPy and runs in
``make compile-check`` (its own venv), not here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arrayprop.kernels import portable
from cupy_standin import FakeElementwiseKernel, import_cupy_fast, restoring_cupy_fast

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cupy_compile_check.py"


@pytest.fixture
def cupy_fast(monkeypatch):
    with restoring_cupy_fast():
        yield import_cupy_fast(monkeypatch)


def test_all_kernels_lists_every_kernel_the_module_launches(cupy_fast):
    listed = [k.name for k in cupy_fast.all_kernels()]
    assert len(listed) == len(set(listed)) == 3 * 2 * len(portable.ACTIVATIONS) + 2
    FakeElementwiseKernel.calls = []
    z, b, w = np.ones((3, 2)), np.ones(2), np.ones((2, 2))
    for kind in portable.ACTIVATIONS:
        for inplace in (False, True):
            cupy_fast.activation(kind, z.copy(), 0.1, inplace)
            cupy_fast.bias_activation(kind, z.copy(), b, 0.1, inplace)
            cupy_fast.activation_grad(kind, z.copy(), z.copy(), 0.1, inplace)
    cupy_fast.linear(z, w, b)
    cupy_fast.sgd_update(w, w.copy(), 0.1)
    cupy_fast.adam_update(w, w.copy(), w.copy(), w.copy(), 0.1, 0.9, 0.99, 1e-8, 0.1, 0.01)
    assert set(FakeElementwiseKernel.calls) <= set(listed)


def test_the_claimed_dtypes_are_the_ones_the_kernels_are_written_for(cupy_fast):
    assert cupy_fast.DTYPES == ("float16", "float32", "float64")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_without_cupy_the_check_says_so_and_exits_2():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "CuPy is not importable" in out.stdout
