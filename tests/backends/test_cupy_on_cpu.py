"""Training through the CuPy fast path on the CPU: the job that sees the CuPy code without a GPU.

A ``cupy`` backend on host arrays (tests/cupy_standin.py: :class:`HostCupyBackend`) trains with
``arrayprop.backends.cupy.kernels`` as its fast module, imported on the stand-in ``cupy`` whose
``ElementwiseKernel`` interprets the kernels' C source. So every primitive the dispatcher sends
to CuPy's module during a real training step (``linear``, ``activation``, ``activation_grad``,
``matmul``, ``bias_grad``, ``sgd_update``, ...) runs here, and the results are compared with the
same training on the ``numpy`` backend. A name the dispatcher calls that CuPy's module lacks, a
wrong argument order or a wrong formula fails here, before any GPU sees it. What this cannot see
is whether the C compiles (scripts/cupy_compile_check.py) and runs on a device
(tests/backends/test_cupy.py).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from cupy_standin import (
    FakeElementwiseKernel,
    HostCupyBackend,
    arrays_belong_to_host_cupy,
    forget_host_backends,
    import_cupy_fast,
    restoring_cupy_fast,
)

SIZES = [12, 16, 10, 4]
N, BATCH = 40, 8
TOL = {"float64": 1e-10, "float32": 1e-4}
ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh"]


@pytest.fixture
def cupy_host(monkeypatch):
    """``(backend factory, fast module)``: CuPy's adapter on host arrays, its real fast module
    on the stand-in cupy, fast paths on even under ARRAYPROP_KERNELS=portable."""
    monkeypatch.setitem(kernels._state, "portable", False)
    with restoring_cupy_fast():
        fast = import_cupy_fast(monkeypatch)

        def make(dtype):
            be = HostCupyBackend.instance(dtype=dtype)
            assert be.name == "cupy" and be.fast is fast
            return be

        try:
            yield make, fast
        finally:
            forget_host_backends()


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], size=N)
    return x, labels


def _optimizer(name, params):
    if name == "sgd":
        return ap.SGD(params, lr=0.1)
    if name == "momentum":
        return ap.SGD(params, lr=0.05, momentum=0.9)
    return ap.Adam(params, lr=0.01)


def _steps(backend, dtype, activation, opt_name, labels_as="int"):
    model = ap.mlp(SIZES, activation=activation, seed=3, backend=backend, dtype=dtype)
    loss = ap.SoftmaxCrossEntropy()
    opt = _optimizer(opt_name, model.parameters())
    be = model.backend
    assert opt.backend is be  # so the update too dispatches on the model's backend
    x, labels = _data()
    xs = be.asarray(x)
    ys = be.asarray(labels) if labels_as == "int" else be.asarray(np.eye(SIZES[-1])[labels])
    losses = []
    for i in range(0, N, BATCH):
        value = ap.train_step(model, loss, opt, xs[i : i + BATCH], ys[i : i + BATCH])
        losses.append(float(be.to_host(value)))
    return losses, [be.to_host(p.data) for p in model.parameters()]


def _assert_same(a, b, dtype):
    (la, pa), (lb, pb) = a, b
    np.testing.assert_allclose(la, lb, rtol=TOL[dtype], atol=TOL[dtype])
    for p, q in zip(pa, pb, strict=True):
        assert p.dtype == q.dtype == np.dtype(dtype)
        np.testing.assert_allclose(p, q, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt_name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_train_steps_through_the_cupy_kernels_match_numpy(cupy_host, dtype, opt_name, activation):
    make, _ = cupy_host
    on_numpy = _steps("numpy", dtype, activation, opt_name)
    with arrays_belong_to_host_cupy():
        on_cupy = _steps(make(dtype), dtype, activation, opt_name)
    _assert_same(on_cupy, on_numpy, dtype)
    # The steps really went through CuPy's kernels: the fused bias + activation forward, the
    # activation gradient and (SGD) the in-place update, each at least once per step.
    names = set(FakeElementwiseKernel.calls)
    assert "arrayprop_bias_act_identity_inplace" in names
    assert f"arrayprop_act_{activation}_inplace" in names or f"arrayprop_act_{activation}" in names
    assert any(n.startswith(f"arrayprop_grad_{activation}") for n in names)
    assert "arrayprop_sgd_update" in names


def test_every_primitive_of_a_step_goes_to_the_cupy_module(cupy_host, monkeypatch):
    make, fast = cupy_host
    called = []
    for name in ("linear", "matmul", "activation", "activation_grad", "bias_grad", "sgd_update"):
        real = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _n=name, _f=real: called.append(_n) or _f(*a))
    with arrays_belong_to_host_cupy():
        _steps(make("float64"), "float64", "tanh", "sgd", labels_as="rows")
    per_step = {n: called.count(n) / (N // BATCH) for n in set(called)}
    # 3 Dense layers: 3 linear (each one GEMM through matmul), 2 activations; backward: 3 weight
    # GEMMs + 2 input GEMMs (the first layer's input gradient is skipped), 3 bias gradients,
    # 2 activation gradients; 6 parameter updates.
    assert per_step == {
        "linear": 3,
        "activation": 2,
        "matmul": 3 + 5,
        "bias_grad": 3,
        "activation_grad": 2,
        "sgd_update": 6,
    }


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_fit_through_the_cupy_kernels_matches_numpy(cupy_host, opt_name):
    make, _ = cupy_host
    x, labels = _data(1)
    histories, weights = [], []
    for backend in ("numpy", make("float64")):
        standin = arrays_belong_to_host_cupy() if backend != "numpy" else contextlib.nullcontext()
        with standin:
            model = ap.mlp(SIZES, seed=5, backend=backend, dtype="float64")
            opt = _optimizer(opt_name, model.parameters())
            assert opt.backend is model.backend
            h = ap.fit(
                model,
                x,
                labels,
                loss="softmax-ce",
                optimizer=opt,
                epochs=3,
                batch_size=BATCH,
                seed=7,
                validation_data=(x[:16], labels[:16]),
                progress=False,
            )
        histories.append(h.history)
        weights.append([model.backend.to_host(p.data) for p in model.parameters()])
    assert histories[0].keys() == histories[1].keys()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # not the timings
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-10, err_msg=key)
    for p, q in zip(*weights, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]  # it trained


def test_a_step_fails_here_when_the_cupy_module_lacks_a_primitive(cupy_host, monkeypatch):
    # The regression this job exists for: without bias_grad every CuPy step raised.
    make, fast = cupy_host
    monkeypatch.delattr(fast, "bias_grad", raising=False)
    with arrays_belong_to_host_cupy(), pytest.raises(AttributeError, match="bias_grad"):
        _steps(make("float64"), "float64", "relu", "sgd")
