"""Standardize (eqs. 42-43 of docs/math.md): the definition, its gradient on every backend,
its buffers in checkpoints and ``.to()``, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import DTypeError, NonFiniteError, ShapeError

#: (sample shape, mean shape, scale shape): per-feature or scalar statistics, rows and images,
#: and (batch, positions, features) data through a 1-D shape.
CASES = [
    ((5,), (5,), (5,)),
    ((5,), (5,), ()),
    ((1, 4, 3), (1, 4, 3), ()),
    ((2, 3), (3,), (2, 1)),
]


def _stats(rng, mean_shape, scale_shape):
    mean = rng.standard_normal(mean_shape)
    scale = 0.5 + rng.random(scale_shape)
    return mean, scale


@pytest.mark.parametrize(("shape", "mshape", "sshape"), CASES, ids=str)
def test_forward_is_the_definition(backend, rng, shape, mshape, sshape):
    mean, scale = _stats(rng, mshape, sshape)
    layer = ap.Standardize(shape, mean, scale, backend=backend)
    x = rng.standard_normal((3, *shape))
    y = backend.to_host(layer.forward(backend.asarray(x)))
    np.testing.assert_allclose(y, (x - mean) / scale, rtol=1e-14, atol=1e-15)
    # The buffers hold the statistics broadcast to one sample's shape.
    np.testing.assert_array_equal(backend.to_host(layer.mean.data), np.broadcast_to(mean, shape))
    assert layer.scale.shape == shape


@pytest.mark.parametrize(("shape", "mshape", "sshape"), CASES, ids=str)
def test_gradcheck(backend, rng, shape, mshape, sshape):
    mean, scale = _stats(rng, mshape, sshape)
    layer = ap.Standardize(shape, mean, scale, backend=backend)
    errors = ap.gradcheck(layer, backend.asarray(rng.standard_normal((4, *shape))))
    assert set(errors) == {"input"}  # nothing trainable
    assert errors["input"] < 1e-6, errors


def test_backward_divides_by_the_scale(backend, rng):
    scale = np.array([0.5, 2.0, 4.0])
    layer = ap.Standardize(3, np.ones(3), scale, backend=backend)
    layer.forward(backend.asarray(rng.standard_normal((2, 3))))
    g = rng.standard_normal((2, 3))
    got = backend.to_host(layer.backward(backend.asarray(g)))
    np.testing.assert_allclose(got, g / scale, rtol=1e-15)


def test_model_with_standardize_trains_and_checkpoints_on_raw_input(backend, rng, tmp_path):
    x = 100.0 + 10.0 * rng.standard_normal((64, 4))  # raw, far from standardised
    y = (x[:, 0] > 100.0).astype(np.int64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    model = ap.Sequential(
        ap.Standardize(4, mean, scale, backend=backend), *ap.mlp([4, 8, 2], seed=0, backend=backend)
    )
    assert model.in_features == 4 and model.out_features == 2
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, seed=0, progress=None)
    assert [name for name, _ in model.named_buffers()] == ["0.mean", "0.scale"]
    path = ap.save_checkpoint(model, tmp_path / "m.npz")
    loaded = ap.load_checkpoint(path, backend=backend)
    assert isinstance(loaded.model[0], ap.Standardize)
    np.testing.assert_array_equal(backend.to_host(loaded.model[0].mean.data), mean)
    np.testing.assert_array_equal(backend.to_host(loaded.model[0].scale.data), scale)
    np.testing.assert_array_equal(
        backend.to_host(loaded.model.predict(x)), backend.to_host(model.predict(x))
    )


def test_to_moves_and_casts_the_buffers(backend, rng):
    mean, scale = rng.standard_normal(3), 1.0 + rng.random(3)
    layer = ap.Standardize(3, mean, scale, backend="numpy", dtype="float64")
    moved = layer.to(backend.with_dtype("float32"))
    assert moved.mean.data.dtype == moved.backend.dtype
    assert moved.backend.owns(moved.mean.data) and moved.backend.owns(moved.scale.data)
    np.testing.assert_allclose(moved.backend.to_host(moved.scale.data), scale, rtol=1e-7)
    np.testing.assert_array_equal(layer.mean.data, mean)  # the original is untouched


def test_defaults_are_the_identity():
    layer = ap.Standardize((2, 2), dtype="float64")
    x = np.arange(8.0).reshape(2, 2, 2)
    np.testing.assert_array_equal(layer.forward(x), x)
    assert layer.in_features is None and layer.config() == {"shape": [2, 2]}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"shape": 0}, ValueError, "shape must be an int >= 1"),
        ({"shape": ()}, ValueError, "at least one axis"),
        ({"shape": 3, "scale": 0.0}, ValueError, "scale must be finite and > 0"),
        ({"shape": 3, "scale": [1.0, -1.0, 1.0]}, ValueError, "scale must be finite and > 0"),
        ({"shape": 3, "scale": np.inf}, ValueError, "scale must be finite and > 0"),
        ({"shape": 3, "mean": [0.0, np.nan, 0.0]}, NonFiniteError, "mean must be finite"),
        ({"shape": 3, "mean": np.zeros(4)}, ShapeError, "does not broadcast"),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        ap.Standardize(**kwargs)


def test_bad_input_shape_and_dtype():
    layer = ap.Standardize(3, dtype="float64")
    with pytest.raises(ShapeError, match=r"expected input of shape \(batch, \.\.\., 3\)"):
        layer.forward(np.zeros((2, 4)))
    with pytest.raises(ShapeError):
        layer.forward(np.zeros(3))  # no batch axis
    with pytest.raises(DTypeError):
        layer.forward(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((2, 3)))
