"""The backend layer: get_backend, dtypes, host<->device transfer and mismatch errors."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendMismatchError

xps = pytest.importorskip("array_api_strict")


def strict(device: str, dtype: str = "float64") -> ap.Backend:
    return ap.get_backend("array_api_strict", device=device, dtype=dtype)


# -- device mismatch: array_api_strict's three devices stand in for CPU and two GPUs -----------


def test_dense_rejects_an_input_on_another_device():
    layer = ap.Dense(3, 2, seed=0, backend=strict("device1"))
    x = strict("device2").asarray(np.ones((4, 3)))
    with pytest.raises(BackendMismatchError, match=r"Dense\(3, 2\) input.*device1.*device2"):
        layer.forward(x)
