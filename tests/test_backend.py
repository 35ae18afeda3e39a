"""The backend layer: get_backend, dtypes, host<->device transfer and mismatch errors."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendMismatchError

pytest.importorskip("array_api_strict")

#: Low-precision float dtypes each library has (the rest must raise DTypeError).
LOW_PRECISION = {
    "numpy": {"float16"},
    "cupy": {"float16"},
    "torch": {"float16", "bfloat16"},
    "jax": {"float16", "bfloat16"},
    "array_api_strict": set(),
}


def strict(device: str, dtype: str = "float64") -> ap.Backend:
    return ap.get_backend("array_api_strict", device=device, dtype=dtype)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("ARRAYPROP_BACKEND", raising=False)
    monkeypatch.delenv("ARRAYPROP_DEVICE", raising=False)
    return monkeypatch


def test_dtype_objects_are_accepted(backend):
    assert ap.get_backend(backend.name, dtype=np.float64).dtype_name == "float64"
    assert ap.get_backend(backend.name, dtype=backend.xp.float32).dtype_name == "float32"


def test_lists_and_scalars(backend):
    np.testing.assert_array_equal(backend.to_host(backend.asarray([[1.5, 2.0]])), [[1.5, 2.0]])
    s = backend.asarray(2.5)
    assert s.shape == () and s.dtype == backend.dtype
    assert float(backend.to_host(s)) == 2.5


def test_dense_rejects_an_input_on_another_device():
    layer = ap.Dense(3, 2, seed=0, backend=strict("device1"))
    x = strict("device2").asarray(np.ones((4, 3)))
    with pytest.raises(BackendMismatchError, match=r"Dense\(3, 2\) input.*device1.*device2"):
        layer.forward(x)
