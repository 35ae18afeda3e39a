"""The test matrix: a ``backend`` fixture over every installed, usable backend.

numpy and array_api_strict always; torch, jax and cupy when they import and (cupy) see a GPU.
Pick backends with ``pytest --backend numpy,torch`` or ``ARRAYPROP_BACKEND=array_api_strict``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendUnavailableError


def _usable(name: str) -> bool:
    try:
        ap.get_backend(name)
    except BackendUnavailableError:
        return False
    return True


INSTALLED = [name for name in ap.BACKENDS if _usable(name)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=None,
        help="comma-separated backends to test (default: ARRAYPROP_BACKEND, else all installed)",
    )


def selected_backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--backend") or os.environ.get("ARRAYPROP_BACKEND")
    if not choice:
        return INSTALLED
    names = [n.strip() for n in choice.split(",") if n.strip()]
    unknown = [n for n in names if n not in ap.BACKENDS]
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {unknown}; valid: {list(ap.BACKENDS)}")
    missing = [n for n in names if n not in INSTALLED]
    if missing:
        raise pytest.UsageError(f"backend(s) {missing} requested but not usable here")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", selected_backends(metafunc.config))


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend(backend_name: str) -> ap.Backend:
    """The backend under test, float64 (the dtype of every gradient check)."""
    return ap.get_backend(backend_name, device=os.environ.get("ARRAYPROP_DEVICE"), dtype="float64")


@pytest.fixture
def backend32(backend: ap.Backend) -> ap.Backend:
    """The backend under test with float32 as its default dtype."""
    return backend.with_dtype("float32")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
