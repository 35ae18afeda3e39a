"""The backend layer: get_backend, dtypes, host<->device transfer and mismatch errors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import arrayprop as ap
import arrayprop.backends.base as backend_module
from arrayprop.errors import BackendMismatchError, BackendUnavailableError, DTypeError
from conftest import INSTALLED

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


def foreign_arrays(backend: ap.Backend) -> dict[str, object]:
    """An array of every other installed library (NumPy arrays are host data, not foreign)."""
    out = {}
    for name in INSTALLED:
        if name not in (backend.name, "numpy"):
            out[name] = ap.get_backend(name, dtype="float64").asarray(np.ones((2, 3)))
    return out


# -- get_backend: argument > environment > numpy -------------------------------------------------


def test_default_backend_is_numpy_float32_on_cpu(clean_env):
    be = ap.get_backend()
    assert (be.name, str(be.device), be.dtype_name) == ("numpy", "cpu", "float32")


def test_environment_picks_backend_and_device(clean_env):
    clean_env.setenv("ARRAYPROP_BACKEND", "array_api_strict")
    clean_env.setenv("ARRAYPROP_DEVICE", "device1")
    be = ap.get_backend()
    assert be.name == "array_api_strict"
    assert be.device == strict("device1").device
    # Layers built without a backend follow the environment too.
    layer = ap.Dense(2, 3, seed=0)
    assert layer.backend.name == "array_api_strict"
    assert layer.weight.data.device == be.device


def test_arguments_beat_the_environment(clean_env):
    clean_env.setenv("ARRAYPROP_BACKEND", "array_api_strict")
    clean_env.setenv("ARRAYPROP_DEVICE", "device1")
    assert ap.get_backend("numpy").name == "numpy"  # ARRAYPROP_DEVICE belongs to the env backend
    assert ap.get_backend(device="device2").device == strict("device2").device
    assert ap.get_backend(dtype="float64").dtype_name == "float64"
    assert ap.Dense(2, 3, backend="numpy").backend.name == "numpy"


def test_a_backend_object_passes_through_or_is_rederived(backend):
    assert ap.get_backend(backend) is backend
    be32 = ap.get_backend(backend, dtype="float32")
    assert (be32.name, str(be32.device), be32.dtype_name) == (
        backend.name,
        str(backend.device),
        "float32",
    )


@pytest.mark.parametrize("spelling", ["NumPy", " numpy ", "array-api-strict"])
def test_names_are_normalised(spelling):
    assert ap.get_backend(spelling).name == spelling.strip().lower().replace("-", "_")


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'") as info:
        ap.get_backend("tensorflow")
    for name in ap.BACKENDS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("torch", 'pip install "arrayprop[torch]"'),
        ("jax", 'pip install "arrayprop[jax]"'),
        ("cupy", 'pip install "arrayprop[cuda12]"  (or arrayprop[cuda13] for CUDA 13)'),
        ("array_api_strict", "pip install array-api-strict"),
    ],
)
def test_missing_library_says_what_to_install(monkeypatch, name, hint):
    monkeypatch.setattr(backend_module, "_CACHE", {})
    monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    with pytest.raises(BackendUnavailableError, match=f"backend '{name}' is not installed") as e:
        ap.get_backend(name)
    assert hint in str(e.value)
    assert isinstance(e.value, ImportError)


def _fake_cupy(monkeypatch: pytest.MonkeyPatch, count) -> None:
    """Install a stand-in cupy whose CUDA runtime reports ``count`` devices (or raises)."""

    def get_device_count() -> int:
        if isinstance(count, Exception):
            raise count
        return count

    class Device:
        def __init__(self, index: int = 0) -> None:
            self.id = index

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count), Device=Device
    )
    monkeypatch.setattr(backend_module, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", types.ModuleType("xp"))


def test_cupy_without_a_working_cuda_driver(monkeypatch):
    _fake_cupy(monkeypatch, RuntimeError("cudaErrorNoDevice: no CUDA-capable device"))
    with pytest.raises(BackendUnavailableError, match="installed but no CUDA device is usable"):
        ap.get_backend("cupy")


def test_cupy_with_no_gpu(monkeypatch):
    _fake_cupy(monkeypatch, 0)
    with pytest.raises(BackendUnavailableError, match="found no CUDA device"):
        ap.get_backend("cupy")


def test_cupy_device_index_out_of_range(monkeypatch):
    _fake_cupy(monkeypatch, 1)
    with pytest.raises(BackendUnavailableError, match=r"'cuda:3' does not exist \(1 CUDA"):
        ap.get_backend("cupy", device="cuda:3")


def test_torch_cuda_without_a_gpu_is_unavailable():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailableError, match="is_available"):
        ap.get_backend("torch", device="cuda")


def test_numpy_has_only_the_cpu():
    with pytest.raises(BackendUnavailableError, match=r"no device 'cuda'; available: \['cpu'\]"):
        ap.get_backend("numpy", device="cuda")


def test_unknown_device_lists_the_available_ones():
    with pytest.raises(BackendUnavailableError, match=r"no device 'device9'.*device1"):
        strict("device9")


# -- dtypes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_dtype_policy(backend, dtype):
    available = dtype in ("float32", "float64") or dtype in LOW_PRECISION[backend.name]
    if not available:
        with pytest.raises(DTypeError, match=f"no dtype '{dtype}'"):
            backend.with_dtype(dtype)
        return
    be = backend.with_dtype(dtype)
    assert be.dtype_name == dtype
    x = be.asarray(np.array([0.5, -2.0, 3.25]))
    assert be.dtype_name in str(x.dtype)
    back = be.to_host(x)
    assert back.dtype.kind == "f"
    # These values are exact in every float format, so the round trip is exact.
    np.testing.assert_array_equal(back, [0.5, -2.0, 3.25])


@pytest.mark.parametrize("dtype", ["int32", "float128", "complex64", "half-precision"])
def test_non_float_or_unknown_model_dtypes_are_rejected(backend, dtype):
    with pytest.raises(DTypeError, match="choose one of"):
        backend.with_dtype(dtype)


def test_dtype_objects_are_accepted(backend):
    assert ap.get_backend(backend.name, dtype=np.float64).dtype_name == "float64"
    assert ap.get_backend(backend.name, dtype=backend.xp.float32).dtype_name == "float32"


# -- host <-> device -----------------------------------------------------------------------------


def test_float64_round_trip_is_bit_exact(backend, rng):
    x = rng.standard_normal((4, 3))
    d = backend.asarray(x)
    assert isinstance(d, backend.array_type)
    assert d.dtype == backend.dtype
    back = backend.to_host(d)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, x)


def test_float_data_takes_the_backend_dtype(backend, backend32, rng):
    x32 = rng.standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_array_equal(backend.to_host(backend.asarray(x32)), x32.astype(np.float64))
    x64 = rng.standard_normal((3, 2))
    d = backend32.asarray(x64)
    assert d.dtype == backend32.dtype
    np.testing.assert_array_equal(backend32.to_host(d), x64.astype(np.float32))


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_integer_and_boolean_data_keep_their_kind(backend, dtype):
    x = np.array([0, 1, 1, 0, 1]).astype(dtype)
    d = backend.asarray(x)
    back = backend.to_host(d)
    assert back.dtype == x.dtype
    np.testing.assert_array_equal(back, x)


def test_lists_and_scalars(backend):
    np.testing.assert_array_equal(backend.to_host(backend.asarray([[1.5, 2.0]])), [[1.5, 2.0]])
    s = backend.asarray(2.5)
    assert s.shape == () and s.dtype == backend.dtype
    assert float(backend.to_host(s)) == 2.5


def test_explicit_dtype_casts(backend, rng):
    x = rng.standard_normal(5)
    d = backend.asarray(x, dtype=backend.xp.float32)
    assert d.dtype == backend.xp.float32
    again = backend.asarray(d, dtype=backend.xp.float64)
    assert again.dtype == backend.xp.float64
    np.testing.assert_array_equal(backend.to_host(again), x.astype(np.float32))


def test_an_array_of_the_backend_is_not_copied(backend, rng):
    d = backend.asarray(rng.standard_normal(3))
    assert backend.asarray(d) is d
    assert backend.owns(d)
    backend.check(d)


@pytest.mark.parametrize("bad", [np.array([["a", "b"]]), np.array([[None, 1.0]], dtype=object)])
def test_non_numeric_data_is_rejected(backend, bad):
    # NumPy arrays are the numpy backend's own arrays, so there Dense is what rejects them.
    layer = ap.Dense(2, 1, backend=backend)
    with pytest.raises(DTypeError, match=r"need numbers|expected input of dtype float64"):
        layer.forward(backend.asarray(bad))


def test_backend_of_finds_library_and_device(backend):
    d = backend.asarray(np.ones(2))
    found = ap.backend_of(d)
    assert found.name == backend.name and str(found.device) == str(backend.device)
    with pytest.raises(BackendMismatchError, match="not an array of a supported backend"):
        ap.backend_of([1.0, 2.0])


# -- mismatches: nothing is copied between libraries or devices behind the user's back ----------


def test_arrays_of_another_library_are_rejected_not_copied(backend):
    for name, x in foreign_arrays(backend).items():
        with pytest.raises(BackendMismatchError, match="convert it explicitly") as info:
            backend.asarray(x)
        assert name in str(info.value)
        assert not backend.owns(x)
        with pytest.raises(BackendMismatchError, match="expected an array of"):
            backend.check(x)
        with pytest.raises(BackendMismatchError):
            backend.to_host(x)


def test_dense_rejects_arrays_of_another_library(backend):
    layer = ap.Dense(3, 2, seed=0, backend=backend)
    inputs = dict(foreign_arrays(backend))
    if backend.name != "numpy":
        inputs["numpy"] = np.ones((2, 3))  # host data must be moved explicitly (asarray)
    assert inputs, "no other library installed"
    for name, x in inputs.items():
        with pytest.raises(BackendMismatchError, match=r"Dense\(3, 2\) input") as info:
            layer.forward(x)
        assert name in str(info.value)


def test_torch_tensor_to_numpy_and_numpy_array_to_torch():
    torch = pytest.importorskip("torch")
    be_np = ap.get_backend("numpy", dtype="float64")
    with pytest.raises(BackendMismatchError, match=r"torch\.Tensor"):
        be_np.asarray(torch.ones(2, 3, dtype=torch.float64))
    layer = ap.Dense(3, 2, seed=0, backend=ap.get_backend("torch", dtype="float64"))
    with pytest.raises(BackendMismatchError, match=r"numpy\.ndarray"):
        layer.forward(np.ones((2, 3)))


def test_array_on_another_device_is_rejected_not_moved():
    be1, be2 = strict("device1"), strict("device2")
    x2 = be2.asarray(np.ones((4, 3)))
    assert not be1.owns(x2)
    with pytest.raises(BackendMismatchError, match=r"device1.*device2"):
        be1.asarray(x2)
    with pytest.raises(BackendMismatchError, match=r"device1.*device2"):
        be1.check(x2)


def test_dense_rejects_an_input_on_another_device():
    layer = ap.Dense(3, 2, seed=0, backend=strict("device1"))
    x = strict("device2").asarray(np.ones((4, 3)))
    with pytest.raises(BackendMismatchError, match=r"Dense\(3, 2\) input.*device1.*device2"):
        layer.forward(x)


def test_losses_reject_targets_on_another_device():
    pred = strict("device1").asarray(np.full((4, 3), 0.5))
    target = strict("device2").asarray(np.ones((4, 3)))
    labels = strict("device2").asarray(np.array([0, 1, 2, 0]))
    with pytest.raises(BackendMismatchError, match="device2"):
        ap.MSE().value_and_grad(pred, target)
    with pytest.raises(BackendMismatchError, match="device2"):
        ap.SoftmaxCrossEntropy().value_and_grad(pred, labels)


def test_train_step_on_a_device_keeps_everything_there(rng):
    be = strict("device1")
    model = ap.mlp([3, 5, 3], activation="sigmoid", seed=1, backend=be)
    opt = ap.SGD(model.parameters(), lr=0.1, momentum=0.9)
    value = ap.train_step(model, ap.SoftmaxCrossEntropy(), opt, rng.random((6, 3)), [0, 1, 2] * 2)
    assert value.device == be.device
    for p in model.parameters():
        assert p.data.device == be.device and p.grad.device == be.device
