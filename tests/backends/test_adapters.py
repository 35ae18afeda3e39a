"""The adapters: one per library, one interface, and each imports its library only when asked."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.backends import ADAPTERS, Backend, adapter
from arrayprop.errors import BackendUnavailableError

#: Libraries that `import arrayprop` and a NumPy backend must leave unimported.
HEAVY = ("cupy", "torch", "jax", "jaxlib", "array_api_strict")


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_every_library_has_an_adapter_in_the_listed_order():
    assert tuple(ADAPTERS) == ap.BACKENDS == ("numpy", "cupy", "torch", "jax", "array_api_strict")
    for name, cls in ADAPTERS.items():
        assert issubclass(cls, Backend) and cls is not Backend
        assert cls.name == name
        assert cls.library and cls.namespace_module and cls.install_hint


def test_every_adapter_has_the_same_public_interface():
    base = _public(Backend)
    for name, cls in ADAPTERS.items():
        assert _public(cls) == base, name


def _parameters(method) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


def test_overrides_keep_the_base_signatures():
    # An adapter overrides hooks; it never changes how they are called.
    for name, cls in ADAPTERS.items():
        for attr in vars(cls):
            if attr.startswith("_") or not callable(getattr(Backend, attr, None)):
                continue
            base = _parameters(getattr(Backend, attr))
            assert _parameters(getattr(cls, attr)) == base, f"{name}.{attr}"


def test_adapter_names_are_normalised_and_checked():
    assert adapter(" Array-API-Strict ") is ADAPTERS["array_api_strict"]
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; valid backends: numpy"):
        adapter("tensorflow")


def test_the_cache_gives_one_object_per_library_device_and_dtype():
    be = ap.get_backend("numpy", dtype="float64")
    assert ap.get_backend("numpy", dtype="float64") is be
    assert type(be).instance(dtype="float64") is be
    assert be.with_dtype("float32") is be.with_dtype("float32")
    assert ap.backend_of(np.ones(2)) is ap.get_backend("numpy")


def test_backends_are_frozen():
    be = ap.get_backend("numpy")
    with pytest.raises(AttributeError):
        be.dtype = np.float64


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "jax"])
def test_libraries_without_tf32_or_cuda_graphs_say_so(name):
    cls = ADAPTERS[name]
    assert not cls.supports_tf32
    with pytest.raises(BackendUnavailableError, match=f"backend '{name}' has no TF32 mode"):
        cls.set_tf32(True)
    if name != "jax":
        with pytest.raises(BackendUnavailableError, match="CUDA graphs need the 'cupy' backend"):
            ap.get_backend(name).graph_capture()


def test_fast_modules_belong_to_the_adapters():
    from arrayprop.backends.numpy import kernels as numpy_fast

    assert ap.get_backend("numpy").fast is numpy_fast
    assert ap.get_backend("array_api_strict").fast is None
    for cls in ADAPTERS.values():  # each adapter's kernels live in its own package
        if cls.fast_module is not None:
            assert cls.fast_module.startswith(cls.__module__ + "."), cls


def test_errstate_hooks(backend):
    # Overflow on purpose: the NumPy-based backends would warn outside these contexts.
    big = backend.asarray(np.array([1e300, -1e300]))
    with backend.expect_overflow():
        out = backend.to_host(big * big)
    with backend.float_errors_ignored():
        backend.to_host(big / backend.asarray(np.zeros(2)))
    assert np.isinf(out).all()


def _modules_after(code: str) -> list[str]:
    """Top-level module names present after running ``code`` in a fresh interpreter."""
    src = str(Path(ap.__file__).resolve().parents[1])
    env = {**os.environ}
    env.pop("ARRAYPROP_BACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code += "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])


def test_a_numpy_backend_imports_no_other_array_library():
    loaded = set(
        _modules_after(
            "import numpy as np, arrayprop as ap\n"
            "be = ap.get_backend('numpy')\n"
            "m = ap.mlp([3, 4, 2], seed=0, backend=be)\n"
            "ap.train_step(m, ap.MSE(), ap.SGD(m.parameters()), np.ones((5, 3)), np.ones((5, 2)))\n"
        )
    )
    assert "numpy" in loaded and "arrayprop" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_asking_for_one_library_imports_only_that_one():
    loaded = set(_modules_after("import arrayprop as ap\nap.get_backend('array_api_strict')\n"))
    assert "array_api_strict" in loaded
    assert loaded.isdisjoint(set(HEAVY) - {"array_api_strict"})


def test_cuda_graph_step_asks_the_backend_for_its_capture(monkeypatch):
    from arrayprop.backends.numpy import NumpyBackend

    capture = object()
    monkeypatch.setattr(NumpyBackend, "graph_capture", lambda self: capture)
    model = ap.mlp([3, 4, 2], seed=0, backend="numpy", dtype="float64")
    step = ap.CudaGraphStep(model, ap.MSE(), ap.SGD(model.parameters()), (4, 3), (4, 2))
    assert step._capture is capture


class _FakeJaxDevice:
    def __init__(self, platform: str, id: int) -> None:
        self.platform, self.id = platform, id

    def __str__(self) -> str:
        return f"{self.platform.upper()}Device(id={self.id})"


def test_jax_resolves_only_devices_it_has(monkeypatch):
    # JAX is not installed here: a stand-in module with one CPU device runs the adapter's logic.
    from arrayprop.backends.jax import JaxBackend

    cpu = _FakeJaxDevice("cpu", 0)
    fake = type(sys)("jax")
    fake.Device = _FakeJaxDevice

    def devices(platform=None):
        if platform not in (None, "cpu"):
            raise RuntimeError(f"Unknown backend {platform}")  # as jax.devices("gpu") on a CPU
        return [cpu]

    fake.devices = devices
    monkeypatch.setitem(sys.modules, "jax", fake)
    for good in (None, "cpu", "cpu:0", str(cpu), 0, cpu):
        assert JaxBackend.resolve_device(None, good) is cpu
    for bad in ("gpu", "cuda:0", "mps", 1, -1, True, 3.5, _FakeJaxDevice("gpu", 0), ("cpu",)):
        with pytest.raises(BackendUnavailableError, match="no device"):
            JaxBackend.resolve_device(None, bad)
