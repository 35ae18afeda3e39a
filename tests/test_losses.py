"""Losses: values and gradients against NumPy math written here, placement, numerics, errors."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from helpers import assert_on_backend

LOSSES = {
    "l2_sum": lambda: ap.L2Loss("sum"),
    "l2_mean": lambda: ap.L2Loss("mean"),
    "mse": ap.MSE,
    "rmse": ap.RMSE,
    "bce": ap.BinaryCrossEntropy,
    "bce_logits": lambda: ap.BinaryCrossEntropy(from_logits=True),
    "sce_labels": ap.SoftmaxCrossEntropy,
    "sce_onehot": ap.SoftmaxCrossEntropy,
}


def loss_inputs(name: str, rng: np.random.Generator, n: int = 5, k: int = 3):
    """(pred, target) host arrays suited to the loss ``name``."""
    if name == "bce":
        return rng.uniform(0.05, 0.95, (n, k)), rng.random((n, k))
    if name == "bce_logits":
        return rng.standard_normal((n, k)), rng.random((n, k))
    if name == "sce_labels":
        return rng.standard_normal((n, k)), rng.integers(0, k, n)
    if name == "sce_onehot":
        return rng.standard_normal((n, k)), np.eye(k)[rng.integers(0, k, n)]
    return rng.standard_normal((n, k)), rng.standard_normal((n, k))


# -- placement: the value is a 0-d array of the backend, never a host scalar --------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_value_and_gradient_live_on_the_backend(backend, name, dtype, rng):
    be = backend.with_dtype(dtype)
    pred, target = loss_inputs(name, rng)
    value, grad = LOSSES[name]().value_and_grad(be.asarray(pred), target)
    assert_on_backend(be, value, what=f"{name} value")
    assert value.shape == ()
    assert_on_backend(be, grad, what=f"{name} gradient")
    assert tuple(grad.shape) == pred.shape


# -- values and gradients against NumPy math written here ---------------------------------------


def test_rmse_value_and_gradient(backend, rng):
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    value, grad = ap.RMSE().value_and_grad(backend.asarray(y), t)
    m = y.size
    total = 0.0
    for i in range(4):
        for j in range(3):
            total += (y[i, j] - t[i, j]) ** 2
    c = (total / m) ** 0.5
    assert float(backend.to_host(value)) == pytest.approx(c, rel=1e-13)
    np.testing.assert_allclose(backend.to_host(grad), (y - t) / (m * c), rtol=1e-12)


def test_rmse_of_a_perfect_prediction_has_a_zero_gradient_not_nan(backend, rng):
    y = rng.standard_normal((4, 3))
    value, grad = ap.RMSE().value_and_grad(backend.asarray(y), y.copy())
    assert float(backend.to_host(value)) == 0.0
    np.testing.assert_array_equal(backend.to_host(grad), np.zeros((4, 3)))
