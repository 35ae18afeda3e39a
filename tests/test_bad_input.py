"""Bad input gives a clear arrayprop exception, on every backend, everywhere in the public API.

The table below lists one case per kind of mistake a user makes (wrong shape, integer data, a
dtype the backend lacks, an array of another library or device, bad labels, empty data,
non-positive hyperparameters, unknown names ...). Each case runs on every backend of the
``backend`` fixture and must raise the named arrayprop exception with a message that names the
problem. The regression tests after the table pin down the core bugs these cases found.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendMismatchError, DataError, DTypeError, LabelError

ALL_LOSSES = [
    ap.MSE(),
    ap.RMSE(),
    ap.L2Loss(),
    ap.L2Loss(reduction="mean"),
    ap.BinaryCrossEntropy(),
    ap.BinaryCrossEntropy(from_logits=True),
    ap.SoftmaxCrossEntropy(),
]

# -- regressions found by the table ----------------------------------------------------------


def test_predict_slices_in_batches_on_every_backend(backend, rng):
    # array_api_strict refuses x[i:j] on a 2-D array (flat indexing is not in the standard).
    model = ap.mlp([3, 5, 2], seed=0, backend=backend)
    x = rng.standard_normal((7, 3))
    w0, b0 = (backend.to_host(p.data) for p in model.layers[0].parameters())
    w1, b1 = (backend.to_host(p.data) for p in model.layers[2].parameters())
    expected = np.maximum(x @ w0 + b0, 0.0) @ w1 + b1
    for batch_size in (None, 2, 7, 100):
        out = backend.to_host(model.predict(x, batch_size=batch_size))
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_predict_takes_host_floats_of_another_precision(backend, rng):
    # On NumPy a host float64 array is also a backend array; predict must still cast it.
    be32 = backend.with_dtype("float32")
    model = ap.mlp([3, 2], seed=0, backend=be32)
    out = model.predict(rng.standard_normal((4, 3)))
    assert out.dtype == be32.dtype


def test_dense_rejects_an_input_on_another_device_of_the_same_library():
    # Same array type, other device: the type check alone let it through to the matmul.
    xs = pytest.importorskip("array_api_strict")
    be = ap.get_backend("array_api_strict", dtype="float64")
    layer = ap.Dense(3, 2, seed=0, backend=be)
    x = xs.ones((4, 3), dtype=xs.float64, device=xs.Device("device1"))
    with pytest.raises(BackendMismatchError, match=r"Dense\(3, 2\) input.*device1"):
        layer.forward(x)


@pytest.mark.parametrize("layer_kind", ["dense", "tanh", "softmax"])
def test_backward_rejects_a_gradient_of_another_dtype_or_library(backend, layer_kind):
    def build():
        if layer_kind == "dense":
            return ap.Dense(3, 2, seed=0, backend=backend)
        layer = ap.Tanh() if layer_kind == "tanh" else ap.Softmax()
        layer.backend = backend
        return layer

    width = 2 if layer_kind == "dense" else 3
    x = backend.asarray(np.ones((4, 3)))
    layer = build()
    layer.forward(x)
    with pytest.raises(DTypeError, match="gradient of dtype"):
        layer.backward(backend.asarray(np.ones((4, width), dtype=np.int64)))
    layer = build()
    layer.forward(x)
    # A host array given to a non-NumPy layer (or a torch tensor to a NumPy one).
    other = np.ones((4, width)) if backend.name != "numpy" else _foreign(width)
    with pytest.raises(BackendMismatchError, match="gradient"):
        layer.backward(other)


def _foreign(width):
    xs = pytest.importorskip("array_api_strict")
    return xs.ones((4, width), dtype=xs.float64)


def test_rmse_runs_on_every_backend(backend, rng):
    # RMSE used finfo().tiny, which the standard (and array_api_strict) calls smallest_normal.
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    value, grad = ap.RMSE().value_and_grad(backend.asarray(y), t)
    c = np.sqrt(np.mean((y - t) ** 2))
    np.testing.assert_allclose(float(backend.to_host(value)), c, rtol=1e-12)
    np.testing.assert_allclose(backend.to_host(grad), (y - t) / (y.size * c), rtol=1e-12)
    zero = ap.RMSE().value_and_grad(backend.asarray(t), t)[1]
    np.testing.assert_array_equal(backend.to_host(zero), np.zeros_like(t))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_a_loss_of_an_empty_batch_is_a_data_error(backend, loss):
    # Was 0/0: NaN with a RuntimeWarning (NumPy, array_api_strict) or ZeroDivisionError.
    k = 3
    pred = backend.asarray(np.zeros((0, k)))
    target = (
        np.zeros(0, dtype=np.int64)
        if isinstance(loss, ap.SoftmaxCrossEntropy)
        else np.zeros((0, k))
    )
    with pytest.raises(DataError, match="empty batch"):
        loss.value_and_grad(pred, target)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("bad", [2.0, -0.5, np.nan])
def test_bce_refuses_targets_outside_0_1(backend, from_logits, bad):
    # Was silently accepted: with from_logits a target of 2 makes the loss unbounded below.
    target = np.array([[0.0, 1.0], [0.25, bad]])
    loss = ap.BinaryCrossEntropy(from_logits=from_logits)
    pred = backend.asarray(np.full((2, 2), 0.5))
    if not backend.on_host:
        pytest.skip("the range check reads targets back only where that costs no device sync")
    with pytest.raises(LabelError, match=r"outside \[0, 1\]"):
        loss.value_and_grad(pred, target)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_non_numeric_targets_are_a_dtype_error(backend, loss):
    # On NumPy a string array counts as a backend array and reached xp.astype deep inside.
    pred = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(DTypeError, match="need numbers"):
        loss.value_and_grad(pred, np.array([["a", "b", "c"]] * 2))


@pytest.mark.parametrize("value", ["fast", None, [0.1]])
def test_a_non_numeric_learning_rate_is_named(backend, value):
    # float("fast") raised "could not convert string to float", naming neither SGD nor lr.
    model = ap.mlp([2, 1], seed=0, backend=backend)
    with pytest.raises(ValueError, match="SGD: lr must be a number"):
        ap.SGD(model.parameters(), lr=value)


def test_gradcheck_of_something_that_is_not_a_layer_is_a_type_error():
    # Was AttributeError: 'str' object has no attribute 'backend'.
    with pytest.raises(TypeError, match="gradcheck: expected a Layer, Sequential or Loss, got str"):
        ap.gradcheck("mlp", np.ones((2, 2)))
