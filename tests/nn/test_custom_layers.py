"""A user's own layers and losses are first-class (the layer protocol of docs/layers.md).

The acceptance cases: a ``Square`` activation and a per-feature ``Scale`` layer, written as the
docs say, train with ``fit``, pass ``gradcheck``, save on numpy and load on torch and
array_api_strict with identical predictions; a deliberately wrong backward in each, in a
``Dense`` subclass and in a custom loss fails ``gradcheck``. Also: state by name, buffers,
``.to()``, train / eval mode, the per-step random stream, the save refusals and ``summary()``.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import CheckpointError


@ap.register_layer
class Square(ap.Layer):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return 2 * self.x * grad


@ap.register_layer
class Scale(ap.Layer):
    def __init__(self, features, backend=None):
        self.features = features
        self.backend = ap.get_backend(backend)
        self.gamma = ap.Parameter(self.backend.asarray(np.ones(features)))

    def config(self):
        return {"features": self.features}

    def forward(self, x):
        self.x = x
        return x * self.gamma.data

    def backward(self, grad):
        self.gamma.grad = self.backend.xp.sum(grad * self.x, axis=0)
        return grad * self.gamma.data


class WrongSquare(Square):
    def backward(self, grad):
        return self.x * grad  # the factor 2 forgotten


class WrongScale(Scale):
    def backward(self, grad):
        self.gamma.grad = self.backend.xp.sum(grad, axis=0)  # x forgotten
        return grad * self.gamma.data


class WrongDense(ap.Dense):
    def backward(self, grad_out, **hints):
        g = super().backward(grad_out, **hints)
        self.bias.grad = 2 * self.bias.grad
        return g


class MAE(ap.Loss):
    def value_and_grad(self, pred, target):
        xp = ap.backend_of(pred).xp
        diff = pred - target
        n = diff.shape[0]
        return xp.sum(xp.abs(diff)) / n, xp.sign(diff) / n


class WrongMAE(MAE):
    def value_and_grad(self, pred, target):
        value, grad = super().value_and_grad(pred, target)
        return value, 2 * grad


def _model(be, square=Square, scale=Scale, dense=ap.Dense):
    return ap.Sequential(
        dense(4, 8, seed=0, backend=be),
        square(),
        scale(8, backend=be),
        ap.Dense(8, 3, seed=1, backend=be),
    )


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_custom_layers_train_with_fit(backend):
    x, y = _data()
    model = _model(backend)
    history = ap.fit(
        model, x, y, loss="softmax-ce", optimizer=ap.Adam(model.parameters(), lr=0.01),
        epochs=15, progress=False, seed=0,
    )  # fmt: skip
    assert history.loss[-1] < 0.8 * history.loss[0]
    assert [name for name, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "2.gamma", "3.weight", "3.bias"
    ]  # fmt: skip
    assert not np.allclose(backend.to_host(model[2].gamma.data), 1.0)  # the optimizer saw it


def test_custom_layers_pass_gradcheck(backend):
    x, y = _data(4)
    errors = ap.gradcheck(_model(backend), x, y, loss=ap.SoftmaxCrossEntropy())
    assert set(errors) == {"0.weight", "0.bias", "2.gamma", "3.weight", "3.bias", "input"}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize(
    ("wrong", "culprit"),
    [
        ({"square": WrongSquare}, "0.weight"),
        ({"scale": WrongScale}, "2.gamma"),
        ({"dense": WrongDense}, "0.bias"),
    ],
    ids=["square", "scale", "dense-subclass"],
)
def test_a_wrong_backward_fails_gradcheck(backend, wrong, culprit):
    x, y = _data(4)
    errors = ap.gradcheck(_model(backend, **wrong), x, y, loss=ap.SoftmaxCrossEntropy())
    assert errors[culprit] > 1e-2, errors


def test_a_wrong_custom_loss_gradient_fails_gradcheck(backend, rng):
    pred = backend.asarray(rng.standard_normal((5, 2)))
    target = backend.asarray(rng.standard_normal((5, 2)))
    assert ap.gradcheck(MAE(), pred, target)["input"] < 1e-6
    assert ap.gradcheck(WrongMAE(), pred, target)["input"] > 1e-2


@pytest.mark.parametrize("target", ["torch", "array_api_strict"])
def test_save_on_numpy_load_elsewhere_same_predictions(target, tmp_path):
    pytest.importorskip(target)
    x, y = _data()
    model = _model(ap.get_backend("numpy", dtype="float64"))
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, progress=False)
    path = ap.save_checkpoint(model, tmp_path / "custom.npz")
    loaded = ap.load_checkpoint(path, backend=target).model
    assert [type(layer) for layer in loaded] == [type(layer) for layer in model]
    assert loaded.backend.name == target and loaded[2].gamma.shape == (8,)
    np.testing.assert_allclose(
        loaded.backend.to_host(loaded.predict(x)), model.predict(x), rtol=1e-12, atol=1e-12
    )


def test_saving_an_unregistered_layer_is_refused_before_writing(tmp_path):
    class Unregistered(Square):
        pass

    model = ap.Sequential(ap.Dense(2, 2, seed=0), Unregistered())
    path = tmp_path / "never.npz"
    with pytest.raises(
        CheckpointError, match=r"layer '1' \(.*Unregistered\).*@arrayprop\.register_layer"
    ):
        ap.save_checkpoint(model, path)
    assert list(tmp_path.iterdir()) == []


def test_saving_a_layer_that_does_not_rebuild_from_its_config_is_refused(tmp_path):
    @ap.register_layer(name="test_custom_layers.NoConfig")
    class NoConfig(Scale):
        def config(self):
            return {}  # forgets "features"

    model = ap.Sequential(ap.Dense(2, 3, seed=0), NoConfig(3))
    with pytest.raises(CheckpointError, match=r"does not rebuild from its config.*config\(\)"):
        ap.save_checkpoint(model, tmp_path / "never.npz")
    assert list(tmp_path.iterdir()) == []


def test_register_layer_refuses_a_taken_name_and_non_layers():
    class Other(ap.Layer):
        pass

    Other.__name__ = Other.__qualname__ = "Square"
    Other.__module__ = "somewhere_else"
    with pytest.raises(ValueError, match="'Square' is already registered"):
        ap.register_layer(Other)
    with pytest.raises(TypeError, match="expected a Layer subclass"):
        ap.register_layer(int)


def test_to_copies_the_state_of_any_layer(backend):
    src = _model(ap.get_backend("numpy", dtype="float64"))
    src[2].gamma.data = src[2].gamma.data * 3.0
    moved = src.to(backend.name, device=backend.device)
    assert moved.backend.name == backend.name
    assert isinstance(moved[1], Square) and isinstance(moved[2], Scale)
    for (n1, p1), (n2, p2) in zip(src.named_parameters(), moved.named_parameters(), strict=True):
        assert n1 == n2
        np.testing.assert_array_equal(backend.to_host(p2.data), p1.data)
    # The copy is independent of the original.
    moved[2].gamma.data = moved[2].gamma.data * 0.0
    assert np.all(src[2].gamma.data == 3.0)


@ap.register_layer
class Running(ap.Layer):
    """A layer with a buffer: the running mean of its inputs (training mode only)."""

    def __init__(self, features, backend=None):
        self.features = features
        self.backend = ap.get_backend(backend)
        self.mean = ap.Buffer(self.backend.zeros((features,)))
        self.seen_modes = []

    def config(self):
        return {"features": self.features}

    def forward(self, x):
        self.seen_modes.append(self.training)
        if self.training:
            self.mean.data = 0.9 * self.mean.data + 0.1 * self.backend.xp.mean(x, axis=0)
        return x - self.mean.data

    def backward(self, grad):
        return grad


def test_buffers_travel_with_state_dict_to_and_checkpoints(backend, tmp_path):
    be = ap.get_backend("numpy", dtype="float64")
    model = ap.Sequential(ap.Dense(4, 3, seed=0, backend=be), Running(3, backend=be))
    x, y = _data()
    ap.fit(model, x, np.eye(3)[y], loss="mse", optimizer="sgd", epochs=1, progress=False)
    state = model.state_dict()
    assert set(state) == {"0.weight", "0.bias", "1.mean"}
    assert np.any(state["1.mean"] != 0)
    moved = model.to(backend.name, device=backend.device)
    np.testing.assert_array_equal(backend.to_host(moved[1].mean.data), state["1.mean"])
    loaded = ap.load_checkpoint(ap.save_checkpoint(model, tmp_path / "b.npz")).model
    np.testing.assert_array_equal(loaded[1].mean.data, state["1.mean"])
    fresh = ap.Sequential(ap.Dense(4, 3, seed=5, backend=be), Running(3, backend=be))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_load_state_dict_names_missing_and_unexpected_keys():
    model = ap.mlp([3, 4, 2], seed=0)
    state = model.state_dict()
    state["9.weight"] = state.pop("2.weight")
    with pytest.raises(
        CheckpointError, match=r"missing keys \['2.weight'\], unexpected keys \['9.weight'\]"
    ):
        model.load_state_dict(state)
    state = model.state_dict()
    state["0.bias"] = np.zeros(7)
    with pytest.raises(CheckpointError, match=r"0.bias has shape \(7,\), the model's has \(4,\)"):
        model.load_state_dict(state)


def test_predict_and_evaluate_run_in_eval_mode_and_fit_in_train_mode():
    be = ap.get_backend("numpy", dtype="float64")
    model = ap.Sequential(ap.Dense(4, 3, seed=0, backend=be), Running(3, backend=be))
    x, y = _data(32)
    ap.fit(model, x, np.eye(3)[y], loss="mse", optimizer="sgd", epochs=1, batch_size=16,
           progress=False, validation_data=(x, np.eye(3)[y]))  # fmt: skip
    assert model[1].seen_modes == [True, True, False]  # two steps, then the validation pass
    model[1].seen_modes.clear()
    before = model[1].mean.data.copy()
    model.predict(x)
    ap.evaluate(model, x, np.eye(3)[y], loss="mse")
    ap.predict(model, x)
    assert model[1].seen_modes == [False, False, False]
    np.testing.assert_array_equal(model[1].mean.data, before)  # eval mode leaves the buffer
    assert model.training and model[1].training  # the mode is restored afterwards
    model.eval()
    assert not model[0].training and not model[1].training


@ap.register_layer
class Noise(ap.Layer):
    """Adds host-drawn noise in training mode, and remembers what it drew."""

    preserves_shape = True  # so the model's output width is read past it

    def __init__(self):
        self.drawn = []

    def forward(self, x):
        if not self.training:
            return x
        noise = self.step_rng().standard_normal(tuple(x.shape))
        self.drawn.append(noise)
        return x + self.backend.asarray(noise, dtype=x.dtype)

    def backward(self, grad):
        return grad


def _noisy(be):
    return ap.Sequential(ap.Dense(4, 3, seed=0, backend=be), Noise(), Noise())


@pytest.mark.parametrize("other", ["torch", "array_api_strict"])
def test_the_step_stream_is_the_same_on_every_backend(other):
    pytest.importorskip(other)
    x, y = _data(32)
    runs = []
    for name in ("numpy", other):
        model = _noisy(ap.get_backend(name, dtype="float64"))
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
               progress=False, seed=7)  # fmt: skip
        runs.append(model)
    for a, b in zip(
        runs[0][1].drawn + runs[0][2].drawn, runs[1][1].drawn + runs[1][2].drawn, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # Two layers, eight steps: every draw differs from every other.
    draws = [d.tobytes() for d in runs[0][1].drawn + runs[0][2].drawn]
    assert len(draws) == 16 and len(set(draws)) == 16


def test_the_step_stream_follows_seed_and_step_and_resumes_exactly(tmp_path):
    be = ap.get_backend("numpy", dtype="float64")
    x, y = _data(32)
    whole = _noisy(be)
    ap.fit(whole, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
           progress=False, seed=7)  # fmt: skip
    path = tmp_path / "run.npz"
    first = _noisy(be)
    ap.fit(first, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=8,
           progress=False, seed=7, checkpoint=path)  # fmt: skip
    resumed = _noisy(be)
    ap.fit(resumed, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
           progress=False, seed=7, checkpoint=path, resume=True)  # fmt: skip
    for a, b in zip(whole[1].drawn[4:], resumed[1].drawn, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _noisy(be)
    ap.fit(other, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=8,
           progress=False, seed=8)  # fmt: skip
    assert not np.array_equal(other[1].drawn[0], whole[1].drawn[0])


def test_summary_lists_layers_shapes_counts_and_flops():
    model = ap.Sequential(ap.Flatten(), ap.Dense(12, 5, seed=0), Square(), Scale(5), ap.Dense(5, 2))
    text = str(model.summary(input_shape=(3, 4)))
    lines = text.splitlines()
    assert lines[0] == 'Model: "Sequential"'
    assert any(line.startswith("0 (Flatten)") and "(None, 12)" in line for line in lines)
    assert any(
        line.startswith("1 (Dense)") and "(None, 5)" in line and line.endswith("65")
        for line in lines
    )
    assert any(line.startswith("3 (Scale)") and line.endswith("5") for line in lines)
    assert "Total params: 82" in text and "Trainable params: 82" in text
    assert "Non-trainable params: 0" in text
    assert "GEMM FLOPs per sample (forward): 140" in text  # 2·12·5 + 2·5·2
    with pytest.raises(ValueError, match="declares no input width; pass input_shape"):
        model.summary()
    assert "(None, 10)" in str(ap.mlp([784, 32, 10], seed=0).summary())


def test_dense_takes_leading_axes(backend, rng):
    layer = ap.Dense(4, 3, seed=0, backend=backend)
    x = rng.standard_normal((2, 5, 4))
    out = layer.forward(backend.asarray(x))
    assert tuple(out.shape) == (2, 5, 3)
    w, b = backend.to_host(layer.weight.data), backend.to_host(layer.bias.data)
    np.testing.assert_allclose(backend.to_host(out), x @ w + b, rtol=1e-12)
    g = rng.standard_normal((2, 5, 3))
    dx = layer.backward(backend.asarray(g))
    np.testing.assert_allclose(backend.to_host(dx), g @ w.T, rtol=1e-12)
    np.testing.assert_allclose(
        backend.to_host(layer.weight.grad), x.reshape(-1, 4).T @ g.reshape(-1, 3), rtol=1e-12
    )
    np.testing.assert_allclose(backend.to_host(layer.bias.grad), g.sum(axis=(0, 1)), rtol=1e-12)


def test_flatten_round_trips_shapes(backend, rng):
    layer = ap.Flatten()
    x = backend.asarray(rng.standard_normal((3, 2, 4)))
    out = layer.forward(x)
    assert tuple(out.shape) == (3, 8)
    back = layer.backward(out)
    np.testing.assert_array_equal(backend.to_host(back), backend.to_host(x))
    errors = ap.gradcheck(ap.Sequential(ap.Flatten(), ap.Dense(8, 2, seed=0, backend=backend)),
                          backend.to_host(x))  # fmt: skip
    assert max(errors.values()) < 1e-6


@ap.register_layer
class TwoDense(ap.Layer):
    """A user's model holding two Dense layers as attributes (not a Sequential)."""

    def __init__(self, backend=None):
        self.hidden = ap.Dense(4, 6, seed=0, backend=backend)
        self.out = ap.Dense(6, 3, seed=1, backend=backend)
        self.backend = self.hidden.backend

    def forward(self, x):
        return self.out.forward(self.hidden.forward(x))

    def backward(self, grad):
        return self.hidden.backward(self.out.backward(grad))


def test_a_users_model_gradchecks_saves_and_refuses_what_it_cannot_save(backend, tmp_path):
    model = TwoDense(backend=backend)
    x, y = _data(4)
    errors = ap.gradcheck(model, x, y, loss=ap.SoftmaxCrossEntropy())
    assert set(errors) == {"hidden.weight", "hidden.bias", "out.weight", "out.bias", "input"}
    assert max(errors.values()) < 1e-6
    loaded = ap.load_checkpoint(ap.save_checkpoint(model, tmp_path / "two.npz")).model
    assert isinstance(loaded, TwoDense)
    np.testing.assert_allclose(
        loaded.backend.to_host(loaded.forward(loaded.backend.asarray(x))),
        backend.to_host(model.forward(backend.asarray(x))),
        rtol=1e-6,
    )


def test_summary_of_a_model_that_is_no_chain_has_one_row():
    text = str(TwoDense().summary(input_shape=(4,)))
    rows = [line for line in text.splitlines() if line.startswith("0 (")]
    assert rows == [rows[0]] and "(TwoDense)" in rows[0] and "(None, 3)" in rows[0]
    assert "Total params: 51" in text  # 4·6 + 6 + 6·3 + 3
    assert "GEMM FLOPs per sample (forward): 84" in text  # 2·4·6 + 2·6·3


def test_fit_refuses_a_checkpoint_it_could_not_rebuild_before_training(tmp_path):
    class Unregistered(Square):
        pass

    model = ap.Sequential(ap.Dense(4, 3, seed=0), Unregistered())
    before = model[0].weight.data.copy()
    x, y = _data()
    with pytest.raises(CheckpointError, match="not a registered layer type"):
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, progress=False,
               checkpoint=tmp_path / "run.npz")  # fmt: skip
    np.testing.assert_array_equal(model[0].weight.data, before)  # not trained
    assert list(tmp_path.iterdir()) == []
