"""Metrics: device sums against NumPy math written here, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import ShapeError
from arrayprop.training.metrics import MAE, MSE, Accuracy, accuracy, get_metric, mae, mse


@pytest.fixture
def scores(rng):
    pred = rng.standard_normal((37, 5))
    labels = rng.integers(0, 5, size=37)
    return pred, labels


def test_accuracy_from_labels_and_one_hot(backend, scores):
    pred, labels = scores
    expected = np.mean(pred.argmax(axis=1) == labels)
    assert 0 < expected < 1  # a real mix of right and wrong
    p = backend.asarray(pred)
    got = accuracy(p, backend.asarray(labels))
    assert got.shape == ()  # a device scalar (NumPy gives a np.float64), not a Python float
    assert not isinstance(got, float) or backend.name == "numpy"
    assert float(backend.to_host(got)) == pytest.approx(expected, abs=1e-12)
    rows = np.eye(5)[labels]
    got_rows = accuracy(p, backend.asarray(rows))
    assert float(backend.to_host(got_rows)) == pytest.approx(expected, abs=1e-12)


def test_accuracy_batch_sum_counts_in_the_given_dtype(backend, scores):
    pred, labels = scores
    xp = backend.xp
    s = Accuracy().batch_sum(xp, backend.asarray(pred), backend.asarray(labels), xp.float32)
    assert s.dtype == xp.float32
    assert s.shape == ()
    assert float(backend.to_host(s)) == float(np.sum(pred.argmax(axis=1) == labels))


def test_accuracy_single_output_threshold(backend, rng):
    z = rng.standard_normal((40, 1))
    t = (rng.random(40) < 0.5).astype(np.int64)
    xp = backend.xp
    for threshold in (0.5, 0.0):
        expected = np.sum((z[:, 0] > threshold) == (t == 1))
        got = Accuracy(threshold).batch_sum(xp, backend.asarray(z), backend.asarray(t), xp.float64)
        assert float(backend.to_host(got)) == expected
    # float 0/1 targets of shape (n, 1) work the same way
    got = Accuracy(0.0).batch_sum(
        xp, backend.asarray(z), backend.asarray(t[:, None].astype(float)), xp.float64
    )
    assert float(backend.to_host(got)) == np.sum((z[:, 0] > 0) == (t == 1))


def test_mse_mae_match_numpy(backend, rng):
    pred = rng.standard_normal((11, 3))
    target = rng.standard_normal((11, 3))
    p, t = backend.asarray(pred), backend.asarray(target)
    assert float(backend.to_host(mse(p, t))) == pytest.approx(np.mean((pred - target) ** 2))
    assert float(backend.to_host(mae(p, t))) == pytest.approx(np.mean(np.abs(pred - target)))
    xp = backend.xp
    # batch sums are Σ over samples of the per-sample mean over outputs
    s = MSE().batch_sum(xp, p, t, xp.float64)
    assert float(backend.to_host(s)) == pytest.approx(np.sum(np.mean((pred - target) ** 2, 1)))
    s = MAE().batch_sum(xp, p, t, xp.float64)
    assert float(backend.to_host(s)) == pytest.approx(np.sum(np.mean(np.abs(pred - target), 1)))


def test_mse_accepts_1d_target_for_single_output(backend, rng):
    pred = rng.standard_normal((9, 1))
    target = rng.standard_normal(9)
    got = mse(backend.asarray(pred), backend.asarray(target))
    assert float(backend.to_host(got)) == pytest.approx(np.mean((pred[:, 0] - target) ** 2))


def test_shape_errors(backend, scores):
    pred, labels = scores
    p = backend.asarray(pred)
    with pytest.raises(ShapeError, match="accuracy"):
        accuracy(p, backend.asarray(labels[:-1]))
    with pytest.raises(ShapeError, match=r"does not match prediction shape \(37, 5\)"):
        mse(p, backend.asarray(pred[:, :2]))
    with pytest.raises(ShapeError, match=r"\(37, 4\)"):
        accuracy(p, backend.asarray(np.zeros((37, 4))))


def test_get_metric():
    assert isinstance(get_metric("accuracy"), Accuracy)
    assert isinstance(get_metric("ACC"), Accuracy)
    assert isinstance(get_metric("mse"), MSE)
    m = MAE()
    assert get_metric(m) is m
    with pytest.raises(ValueError, match="unknown metric 'f1'; valid: accuracy"):
        get_metric("f1")


def test_metrics_are_portable():
    """metrics.py computes with the Array API only (no array library imported by name)."""
    import inspect

    import arrayprop.training.metrics as mod

    source = inspect.getsource(mod)
    for name in ("import numpy", "import torch", "import cupy", "np."):
        assert name not in source
    assert ap.training.metrics is mod
