"""The test matrix: a ``backend`` fixture over every installed, usable backend.

numpy and array_api_strict always; torch, jax and cupy when they import and (cupy) see a GPU.
Pick backends with ``pytest --backend numpy,torch`` or ``ARRAYPROP_BACKEND=array_api_strict``,
and their device with ``pytest --device cuda`` (e.g. ``--backend cupy,torch --device cuda``).

The device is a pytest option, not an environment variable: options reach pytest-xdist workers
and stay out of the subprocesses tests start (the CLI tests), whereas ``ARRAYPROP_DEVICE`` is
the library's own default (``get_backend()`` reads it) and, set for a test run, would move every
``get_backend()`` call of the suite and of those subprocesses (numpy asked for "cuda"). So the
suite refuses to start with ``ARRAYPROP_DEVICE`` set.
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
    parser.addoption(
        "--device",
        default=None,
        help="device of the backends under test, e.g. cuda or cuda:1 (default: each library's "
        "default); every selected backend must have it",
    )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("ARRAYPROP_DEVICE"):
        raise pytest.UsageError(
            f"ARRAYPROP_DEVICE={os.environ['ARRAYPROP_DEVICE']} is set: it would become the "
            "device of every get_backend() call in the tests and in the CLI subprocesses they "
            "start. Unset it and pass the device as an option: pytest --backend cupy,torch "
            "--device cuda"
        )
    _check_device(config, selected_backends(config))


def selected_device(config: pytest.Config) -> str | None:
    """The ``--device`` option (None: each library's default device)."""
    return config.getoption("--device") or None


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


def _check_device(config: pytest.Config, names: list[str]) -> None:
    device = selected_device(config)
    if device is None:
        return
    for name in names:
        try:
            ap.get_backend(name, device=device)
        except BackendUnavailableError as exc:
            raise pytest.UsageError(
                f"--device {device}: backend {name!r} cannot use it ({exc}); select the "
                "backends that have that device with --backend"
            ) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", selected_backends(metafunc.config))


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend(backend_name: str, request: pytest.FixtureRequest) -> ap.Backend:
    """The backend under test on the ``--device`` device, float64 (the dtype of every
    gradient check)."""
    return ap.get_backend(backend_name, device=selected_device(request.config), dtype="float64")


@pytest.fixture
def backend32(backend: ap.Backend) -> ap.Backend:
    """The backend under test with float32 as its default dtype."""
    return backend.with_dtype("float32")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
