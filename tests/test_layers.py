"""Layers and Sequential: forward/backward against NumPy math, placement, errors, ``to``, mlp."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendMismatchError
from helpers import host

# -- buffers: a layer never writes into an array it does not own -------------------------------


@pytest.mark.parametrize("act", [ap.ReLU, ap.Tanh, ap.Sigmoid])
def test_identity_first_does_not_let_the_next_layer_overwrite_the_callers_input(backend, act):
    x_host = np.array([[-1.0, 2.0, -0.5], [0.25, -3.0, 1.0]])
    x = backend.asarray(x_host.copy())
    model = ap.Sequential(ap.Identity(), act())
    model.forward(x)
    np.testing.assert_array_equal(host(backend, x), x_host)


@pytest.mark.parametrize("act", [ap.ReLU, ap.Tanh, ap.Sigmoid])
def test_identity_last_does_not_let_backward_overwrite_the_callers_gradient(backend, act, rng):
    model = ap.Sequential(ap.Dense(3, 4, seed=1, backend=backend), act(), ap.Identity())
    g_host = rng.standard_normal((2, 4))
    g = backend.asarray(g_host.copy())
    model.forward(backend.asarray(rng.standard_normal((2, 3))))
    model.backward(g)
    np.testing.assert_array_equal(host(backend, g), g_host)


def test_nested_sequential_output_is_not_overwritten_by_the_next_layer(backend, rng):
    # The inner model ends with Tanh, which keeps its output for backward: the outer Tanh must
    # not overwrite it in place, or the inner backward would use the wrong f'(Z).
    inner = ap.Sequential(ap.Dense(3, 4, seed=2, backend=backend), ap.Tanh())
    outer = ap.Sequential(inner, ap.Tanh())
    x = rng.standard_normal((5, 3))
    outer.forward(backend.asarray(x))
    g = rng.standard_normal((5, 4))
    outer.backward(backend.asarray(g))
    w = host(backend, inner[0].weight.data)
    a = np.tanh(x @ w)
    delta = g * (1.0 - np.tanh(a) ** 2) * (1.0 - a**2)
    np.testing.assert_allclose(host(backend, inner[0].weight.grad), x.T @ delta, rtol=1e-12)


def test_dense_copies_given_weights_so_training_never_changes_the_callers_arrays(backend, rng):
    w, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    w0, b0 = w.copy(), b.copy()
    model = ap.Sequential(ap.Dense(3, 2, weight=w, bias=b, backend=backend), ap.Sigmoid())
    opt = ap.SGD(model.parameters(), lr=0.5)
    ap.train_step(model, ap.MSE(), opt, rng.standard_normal((4, 3)), rng.random((4, 2)))
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(b, b0)
    assert not np.array_equal(host(backend, model[0].weight.data), w0)


def test_to_gives_an_independent_copy_training_it_leaves_the_original_unchanged(backend, rng):
    model = ap.mlp([3, 4, 2], activation="tanh", seed=3, backend=backend)
    before = [host(backend, p.data) for p in model.parameters()]
    copy = model.to(backend)
    opt = ap.SGD(copy.parameters(), lr=0.5)
    ap.train_step(copy, ap.MSE(), opt, rng.standard_normal((4, 3)), rng.random((4, 2)))
    for p, b in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(host(backend, p.data), b)
    assert not np.array_equal(host(backend, copy[0].weight.data), before[0])


def test_sequential_accepts_equal_backends_built_differently():
    a = ap.get_backend("numpy", dtype="float64")
    b = ap.get_backend("numpy", dtype="float32").with_dtype("float64")
    model = ap.Sequential(ap.Dense(2, 3, backend=a), ap.Dense(3, 1, backend=b))
    assert model.backend.dtype_name == "float64"


def test_sequential_rejects_layers_on_different_backends():
    d64 = ap.Dense(2, 3, backend="numpy", dtype="float64")
    d32 = ap.Dense(3, 1, backend="numpy", dtype="float32")
    with pytest.raises(BackendMismatchError, match="different backends"):
        ap.Sequential(d64, d32)
    strict = ap.Dense(3, 1, backend="array_api_strict", dtype="float64")
    with pytest.raises(BackendMismatchError, match="array_api_strict"):
        ap.Sequential(d64, strict)


def test_predict_in_batches_equals_one_batch_and_keeps_no_state(backend, rng):
    model = ap.mlp([4, 6, 3], activation="sigmoid", seed=2, backend=backend)
    x = rng.standard_normal((10, 4))
    whole = host(backend, model.predict(x))
    for batch_size in (1, 3, 10, 64):
        np.testing.assert_allclose(
            host(backend, model.predict(backend.asarray(x), batch_size=batch_size)),
            whole,
            rtol=1e-14,
        )
    with pytest.raises(RuntimeError, match="backward called before forward"):
        model.backward(backend.asarray(np.ones((10, 3))))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        model.predict(x, batch_size=0)


def test_predict_and_train_step_move_host_data_of_any_float_dtype(backend32, rng):
    # Host data is float64 by default; a float32 model takes it on every backend (numpy too,
    # where host arrays are the backend's own arrays).
    model = ap.mlp([4, 5, 3], seed=0, backend=backend32)
    x = rng.standard_normal((6, 4))
    out = model.predict(x)
    assert out.dtype == backend32.dtype
    expected = model.predict(x.astype(np.float32))
    np.testing.assert_array_equal(backend32.to_host(out), backend32.to_host(expected))
    opt = ap.SGD(model.parameters(), lr=0.1)
    value = ap.train_step(model, ap.SoftmaxCrossEntropy(), opt, x, rng.integers(0, 3, 6))
    assert value.dtype == backend32.dtype
