"""Fixtures shared by the training tests: one torch thread, and two small data sets."""

from __future__ import annotations

import pytest

import fitref


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny matrices: torch's intra-op threads only contend for the cores (10x slower here)."""
    with fitref.one_torch_thread():
        yield


@pytest.fixture
def small(rng):
    return fitref.small_classification(rng)


@pytest.fixture(scope="module")
def digits():
    return fitref.digits()
