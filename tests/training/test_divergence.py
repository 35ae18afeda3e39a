"""Divergence: fit names the epoch, step and layer of the first non-finite loss, restores the
last finite weights (granularity: one progress refresh) and leaves the last checkpoint intact.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import arrayprop as ap
import arrayprop.training.api as train_mod
from arrayprop.errors import DivergenceError
from fitref import assert_weights, model_weights


def _first_bad_step(backend, x, y, lr, batch, seed=0):
    """Step (from 1) whose loss is first non-finite, by syncing after every step."""
    m = ap.mlp([64, 16, 10], seed=seed, backend=backend)
    opt = ap.SGD(m.parameters(), lr=lr)
    loss = ap.SoftmaxCrossEntropy()
    weights = [model_weights(m)]
    onehot = backend.asarray(np.eye(10)[y])
    xd = backend.asarray(x)
    for k, s in enumerate(range(0, x.shape[0], batch), start=1):
        with backend.float_errors_ignored():
            value = ap.train_step(m, loss, opt, xd[s : s + batch, ...], onehot[s : s + batch, ...])
        if not math.isfinite(float(backend.to_host(value))):
            return k, weights
        weights.append(model_weights(m))
    raise AssertionError("no divergence")


def test_divergence_names_epoch_step_layer_and_restores_weights(backend, digits):
    x, y, _, _ = digits
    x, y = x[:256], y[:256]
    bad_step, _ = _first_bad_step(backend, x, y, lr=1e200, batch=8)
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    initial = model_weights(m)
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=ap.SGD(m.parameters(), lr=1e200),
            epochs=3,
            batch_size=8,
            shuffle=False,
            progress=None,
        )
    err = info.value
    assert (err.epoch, err.step) == (1, bad_step)
    assert f"training diverged at epoch 1, step {bad_step} of 32" in str(err)
    assert err.layer is not None and re.fullmatch(
        r"[02]\.(weight|bias) of Dense\(\d+, \d+\)", err.layer
    )
    assert err.layer in str(err)
    assert "restored to those of the start of training" in str(err)
    # without a bar the last finite read was the start: the weights are the initial ones
    assert_weights(model_weights(m), initial, exact=True)


@pytest.mark.parametrize("window", [1, 7, 1024])
def test_divergence_step_across_on_device_reductions(backend, monkeypatch, window):
    """A regression blowing up geometrically: the first non-finite loss comes late in the
    epoch, after several on-device reductions of the per-step values (WINDOW_STEPS)."""
    x, y, _, _ = ap.data.make_linear_regression(n=400, features=3, seed=0)
    m = ap.mlp([3, 1], seed=5, backend=backend)
    opt, loss = ap.SGD(m.parameters(), lr=20.0), ap.MSE()
    xd, yd = backend.asarray(x), backend.asarray(y)
    bad_step = None
    for k, s in enumerate(range(0, 400, 4), start=1):
        with backend.float_errors_ignored():
            value = ap.train_step(m, loss, opt, xd[s : s + 4, ...], yd[s : s + 4, ...])
        if not math.isfinite(float(backend.to_host(value))):
            bad_step = k
            break
    assert bad_step is not None and 20 < bad_step < 100
    monkeypatch.setattr(train_mod, "WINDOW_STEPS", window)
    m = ap.mlp([3, 1], seed=5, backend=backend)
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            m,
            x,
            y,
            loss="mse",
            optimizer=ap.SGD(m.parameters(), lr=20.0),
            epochs=2,
            batch_size=4,
            shuffle=False,
            progress=None,
        )
    assert (info.value.epoch, info.value.step) == (1, bad_step)


def test_divergence_granularity_is_one_refresh(digits, monkeypatch):
    be = ap.get_backend("numpy", dtype="float64")
    x, y = digits[0][:256], digits[1][:256]
    bad_step, weights = _first_bad_step(be, x, y, lr=1e200, batch=8)
    monkeypatch.setattr(train_mod, "REFRESH_SECONDS", 0.0)  # a read after every step
    m = ap.mlp([64, 16, 10], seed=0, backend=be)
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=ap.SGD(m.parameters(), lr=1e200),
            epochs=1,
            batch_size=8,
            shuffle=False,
            progress="bar",
        )
    err = info.value
    # Either the loss of bad_step, or already the weights after bad_step - 1, were non-finite.
    assert err.step in (bad_step - 1, bad_step)
    assert all(np.isfinite(w).all() for w in model_weights(m))
    assert_weights(model_weights(m), weights[err.step - 1], exact=True)


def test_divergence_leaves_the_last_checkpoint_intact(digits, tmp_path):
    from arrayprop import checkpoint

    x, y = digits[0][:128], digits[1][:128]
    m = ap.mlp([64, 16, 10], seed=0, dtype="float64", backend="numpy")
    opt = ap.SGD(m.parameters(), lr=0.05)
    after_epoch = {}

    def blow_up(epoch, logs):
        after_epoch[epoch] = model_weights(m)
        if epoch == 2:
            opt.lr = 1e200

    path = tmp_path / "ck.npz"
    with pytest.raises(DivergenceError, match="at epoch 3"):
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=opt,
            epochs=5,
            batch_size=16,
            callbacks=[ap.LambdaCallback(blow_up)],
            checkpoint=path,
            progress=None,
        )
    saved = checkpoint.load(path, backend="numpy")
    assert saved.extra["fit"]["epoch"] == 2
    assert_weights(model_weights(saved.model), after_epoch[2], exact=True)
    assert_weights(model_weights(m), after_epoch[2], exact=True)
