"""Layers and Sequential: forward/backward against NumPy math, placement, errors, ``to``, mlp."""

from __future__ import annotations

import re

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import BackendMismatchError, DTypeError, ShapeError
from helpers import (
    ACTIVATION_LAYERS,
    assert_on_backend,
    away_from_zero,
    host,
    np_activation,
    np_activation_derivative,
    np_softmax_rows,
)

ALL_LAYERS = [*ACTIVATION_LAYERS, "softmax", "dense"]


def make_layer(name: str, backend: ap.Backend | None = None, seed: int = 0) -> ap.Layer:
    if name == "dense":
        return ap.Dense(4, 3, seed=seed, backend=backend)
    if name == "softmax":
        return ap.Softmax()
    return ap.LeakyReLU(0.1) if name == "leaky_relu" else ACTIVATION_LAYERS[name]()


# -- forward and backward against NumPy math written here ---------------------------------------


def test_dense_forward_and_backward(backend, rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    layer = ap.Dense(4, 3, weight=w, bias=b, backend=backend)
    z = host(backend, layer.forward(backend.asarray(x)))
    delta = rng.standard_normal((5, 3))
    grad_x = host(backend, layer.backward(backend.asarray(delta)))
    for n in range(5):
        for j in range(3):
            assert z[n, j] == pytest.approx(sum(x[n, i] * w[i, j] for i in range(4)) + b[j])
    gw, gb = host(backend, layer.weight.grad), host(backend, layer.bias.grad)
    for i in range(4):
        for j in range(3):
            assert gw[i, j] == pytest.approx(sum(x[n, i] * delta[n, j] for n in range(5)))
    for j in range(3):
        assert gb[j] == pytest.approx(sum(delta[n, j] for n in range(5)))
    for n in range(5):
        for i in range(4):
            assert grad_x[n, i] == pytest.approx(sum(delta[n, j] * w[i, j] for j in range(3)))


@pytest.mark.parametrize("kind", list(ACTIVATION_LAYERS))
def test_activation_forward_and_backward(backend, kind, rng):
    layer = make_layer(kind)
    alpha = getattr(layer, "alpha", 0.0)
    z = away_from_zero(rng, (4, 5))
    a = layer.forward(backend.asarray(z))
    np.testing.assert_allclose(host(backend, a), np_activation(kind, z, alpha), rtol=1e-14)
    g = rng.standard_normal((4, 5))
    grad = layer.backward(backend.asarray(g))
    expected = g * np_activation_derivative(kind, z, alpha)
    np.testing.assert_allclose(host(backend, grad), expected, rtol=1e-12, atol=1e-15)


def test_softmax_forward_and_backward_through_its_jacobian(backend, rng):
    z, g = rng.standard_normal((3, 4)) * 2, rng.standard_normal((3, 4))
    layer = ap.Softmax()
    a = host(backend, layer.forward(backend.asarray(z)))
    np.testing.assert_allclose(a, np_softmax_rows(z), rtol=1e-13)
    grad = host(backend, layer.backward(backend.asarray(g)))
    s = np_softmax_rows(z)
    for n in range(3):
        for i in range(4):
            # ∂C/∂z_i = Σ_j g_j ∂a_j/∂z_i with ∂a_j/∂z_i = a_j ([i = j] − a_i)
            expected = sum(g[n, j] * s[n, j] * ((i == j) - s[n, i]) for j in range(4))
            assert grad[n, i] == pytest.approx(expected, rel=1e-11, abs=1e-15)


# -- every output on the backend's library, device and dtype ------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL_LAYERS)
def test_layer_outputs_live_on_the_backend(backend, name, dtype, rng):
    be = backend.with_dtype(dtype)
    layer = make_layer(name, backend=be)
    x = be.asarray(away_from_zero(rng, (6, 4)))
    out = layer.forward(x)
    assert_on_backend(be, out, what=f"{name} output")
    grad_in = layer.backward(be.asarray(rng.standard_normal(tuple(out.shape))))
    assert_on_backend(be, grad_in, what=f"{name} input gradient")
    assert tuple(grad_in.shape) == (6, 4)
    for p in layer.parameters():
        assert_on_backend(be, p.data, what=f"{name} {p.name}")
        assert_on_backend(be, p.grad, what=f"{name} {p.name}.grad")
        assert tuple(p.grad.shape) == p.shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_outputs_live_on_the_backend(backend, dtype, rng):
    be = backend.with_dtype(dtype)
    model = ap.mlp([4, 6, 5, 3], activation="tanh", output_activation="softmax", seed=0, backend=be)
    x = be.asarray(rng.standard_normal((8, 4)))
    out = model.forward(x)
    assert_on_backend(be, out, what="model output")
    value, grad = ap.MSE().value_and_grad(out, rng.random((8, 3)))
    assert_on_backend(be, value, what="loss value")
    grad_x = model.backward(grad)
    assert_on_backend(be, grad_x, what="input gradient")
    for p in model.parameters():
        assert_on_backend(be, p.grad, what=f"{p.name}.grad")
    opt = ap.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for _ in range(2):
        result = ap.train_step(model, ap.MSE(), opt, x, rng.random((8, 3)))
        assert_on_backend(be, result, what="train_step result")
        assert tuple(result.shape) == ()
    for p in model.parameters():
        assert_on_backend(be, p.data, what=f"updated {p.name}")
    assert_on_backend(be, model.predict(rng.standard_normal((5, 4)), batch_size=2), what="predict")


# -- error messages ------------------------------------------------------------------------------


def test_wrong_input_width_names_the_layer_and_both_shapes(backend):
    layer = ap.Dense(784, 128, seed=0, backend=backend)
    x = backend.asarray(np.zeros((32, 785)))
    expected = "Dense(784, 128): expected input of shape (..., 784), got (32, 785)"
    with pytest.raises(ShapeError) as info:
        layer.forward(x)
    assert str(info.value) == expected


@pytest.mark.parametrize("name", ALL_LAYERS)
def test_inputs_need_a_batch_axis_and_a_feature_axis(backend, name):
    layer = make_layer(name, backend=backend)
    expected = r"\(\.\.\., 4\)" if name == "dense" else r"\(batch, \.\.\.\)"
    with pytest.raises(ShapeError, match=rf"expected input of shape {expected}, got \(4,\)"):
        layer.forward(backend.asarray(np.ones(4)))


def test_input_dtype_must_match_the_weights(backend, backend32):
    layer = ap.Dense(3, 2, seed=0, backend=backend)
    with pytest.raises(DTypeError, match=r"Dense\(3, 2\): expected input of dtype float64, got"):
        layer.forward(backend32.asarray(np.ones((2, 3))))
    with pytest.raises(DTypeError, match="integer data must be cast"):
        layer.forward(backend.asarray(np.ones((2, 3), dtype=np.int64)))


@pytest.mark.parametrize("name", ALL_LAYERS)
def test_backward_before_forward(backend, name, rng):
    layer = make_layer(name, backend=backend)
    g = backend.asarray(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="backward called before forward") as info:
        layer.backward(g)
    assert repr(layer) in str(info.value)
    # The cache is released by backward: a second backward is the same mistake.
    out = layer.forward(backend.asarray(away_from_zero(rng, (2, 4))))
    layer.backward(backend.asarray(np.ones(tuple(out.shape))))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(backend.asarray(np.ones(tuple(out.shape))))


@pytest.mark.parametrize("name", ALL_LAYERS)
def test_gradient_shape_must_match_the_output(backend, name, rng):
    layer = make_layer(name, backend=backend)
    layer.forward(backend.asarray(away_from_zero(rng, (2, 4))))
    with pytest.raises(ShapeError, match=repr(layer).replace("(", r"\(").replace(")", r"\)")):
        layer.backward(backend.asarray(np.ones((3, 5))))


def test_constructor_arguments_are_checked(backend):
    with pytest.raises(
        ShapeError, match=r"Dense\(3, 2\): weight must have shape \(3, 2\), got \(2, 3\)"
    ):
        ap.Dense(3, 2, weight=np.ones((2, 3)), backend=backend)
    with pytest.raises(ShapeError, match=r"bias must have shape \(2,\), got \(3,\)"):
        ap.Dense(3, 2, bias=np.ones(3), backend=backend)
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(
            ValueError,
            match=rf"^Dense: in_features must be an int >= 1, got {re.escape(repr(bad))}$",
        ):
            ap.Dense(bad, 2, backend=backend)
    # Any integer type is a width, and the layer keeps a plain int (its config is JSON).
    assert ap.Dense(np.int64(3), 2, backend=backend).config()["in_features"] == 3
    with pytest.raises(ValueError, match=r"^mlp: sizes\[1\] must be an int >= 1, got 0$"):
        ap.mlp([3, 0, 2], backend=backend)
    with pytest.raises(ValueError, match="unknown initializer 'uniformish'"):
        ap.Dense(3, 2, init="uniformish", backend=backend)
    for alpha in (0.0, 1.0, -0.1, float("nan"), "0.1"):
        with pytest.raises(
            ValueError,
            match=r"^LeakyReLU: alpha must be a finite number in \(0, 1\), got "
            + re.escape(repr(alpha)),
        ):
            ap.LeakyReLU(alpha)
    with pytest.raises(TypeError, match="item 1 is builtin_function_or_method, not a Layer"):
        ap.Sequential(ap.ReLU(), abs)


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


# -- Sequential.to, predict, mlp -----------------------------------------------------------------


def test_to_another_backend_gives_identical_predictions_and_leaves_the_original(backend, rng):
    source = ap.mlp([5, 7, 6, 3], activation="leaky_relu", seed=4, backend="numpy", dtype="float64")
    source.layers[1].alpha = 0.2
    params = [p.data for p in source.parameters()]
    saved = [p.copy() for p in params]
    x = rng.standard_normal((9, 5))
    expected = source.predict(x)

    moved = source.to(backend)
    assert moved.backend.name == backend.name and moved.backend.dtype_name == "float64"
    assert [type(layer) for layer in moved] == [type(layer) for layer in source]
    assert moved.layers[1].alpha == 0.2
    for p_src, p_dst in zip(source.parameters(), moved.parameters(), strict=True):
        assert_on_backend(backend, p_dst.data, what=p_dst.name)
        np.testing.assert_array_equal(host(backend, p_dst.data), p_src.data)  # bit-identical
    np.testing.assert_allclose(host(backend, moved.predict(x)), expected, rtol=1e-13, atol=1e-15)
    # The original: same backend, same arrays, same values.
    assert source.backend.name == "numpy"
    for p, data, s in zip(source.parameters(), params, saved, strict=True):
        assert p.data is data
        np.testing.assert_array_equal(p.data, s)


def test_to_a_device_and_a_dtype():
    pytest.importorskip("array_api_strict")
    model = ap.mlp([3, 4, 2], seed=0, backend="numpy", dtype="float64")
    moved = model.to("array_api_strict", device="device2", dtype="float32")
    be = moved.backend
    assert be.name == "array_api_strict" and be.dtype_name == "float32"
    for p in moved.parameters():
        assert p.data.device == be.device and p.data.dtype == be.dtype
    out = moved.predict(np.ones((2, 3)))
    assert out.device == be.device
    np.testing.assert_allclose(
        be.to_host(out), model.predict(np.ones((2, 3))), rtol=1e-6, atol=1e-7
    )
    assert model.to("numpy").backend.dtype_name == "float64"  # a name keeps the model's dtype


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
    for bad in (0, -4, 2.5):
        with pytest.raises(
            ValueError, match=rf"^predict: batch_size must be an int >= 1, got {bad}$"
        ):
            model.predict(x, batch_size=bad)


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


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh", "identity"])
def test_mlp_structure(backend, activation):
    model = ap.mlp([4, 8, 5, 3], activation=activation, seed=0, backend=backend)
    act = ap.nn.ACTIVATIONS[activation]
    kinds = [type(layer) for layer in model]
    assert kinds == [ap.Dense, act, ap.Dense, act, ap.Dense]  # logits out: no final activation
    shapes = [p.shape for p in model.parameters()]
    assert shapes == [(4, 8), (8,), (8, 5), (5,), (5, 3), (3,)]
    names = [p.name for p in model.parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert all(layer.backend is model.backend for layer in model)
    assert model.backend.name == backend.name
    expected_init = "he" if activation in ("relu", "leaky_relu") else "glorot"
    assert {layer.init for layer in model if isinstance(layer, ap.Dense)} == {expected_init}
    for p in model.parameters():
        if p.name.endswith("bias"):
            np.testing.assert_array_equal(host(backend, p.data), 0.0)
    with_out = ap.mlp([4, 2], output_activation="softmax", backend=backend)
    assert [type(layer) for layer in with_out] == [ap.Dense, ap.Softmax]


def test_mlp_initial_weight_scale_follows_the_init(rng):
    # He: Var = 2 / fan_in; Glorot: Var = 2 / (fan_in + fan_out); 200 x 300 samples per layer.
    he = ap.mlp([200, 300], activation="relu", seed=1, backend="numpy", dtype="float64")
    gl = ap.mlp([200, 300], activation="tanh", seed=1, backend="numpy", dtype="float64")
    assert np.var(he[0].weight.data) == pytest.approx(2 / 200, rel=0.02)
    assert np.var(gl[0].weight.data) == pytest.approx(2 / 500, rel=0.02)


def test_mlp_rejects_bad_arguments(backend):
    with pytest.raises(ValueError, match="need at least an input and an output size"):
        ap.mlp([4], backend=backend)
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid: relu"):
        ap.mlp([4, 2], activation="swish", backend=backend)
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        ap.mlp([4, 2], output_activation="mish", backend=backend)


def test_zero_grad_and_parameters(backend, rng):
    model = ap.mlp([3, 4, 2], seed=0, backend=backend)
    model.forward(backend.asarray(rng.standard_normal((2, 3))))
    model.backward(backend.asarray(np.ones((2, 2))))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert ap.ReLU().parameters() == []


def test_predict_of_a_parameter_free_model_runs_on_the_input_backend(backend):
    x = np.array([[-1.0, 2.0], [3.0, -4.0]])
    out = ap.Sequential(ap.ReLU(), ap.Tanh()).predict(backend.asarray(x))
    assert isinstance(out, backend.array_type)
    np.testing.assert_allclose(backend.to_host(out), np.tanh(np.maximum(x, 0.0)), rtol=1e-15)


def test_predict_keeps_no_backward_state_in_nested_models(backend):
    inner = ap.Sequential(ap.Dense(3, 4, seed=0, backend=backend), ap.Tanh())
    model = ap.Sequential(inner, ap.Dense(4, 2, seed=1, backend=backend), ap.Sigmoid())
    model.predict(np.ones((5, 3)))
    for layer in (*inner.layers, *model.layers[1:]):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(backend.asarray(np.ones((5, 4 if layer is inner.layers[1] else 2))))
