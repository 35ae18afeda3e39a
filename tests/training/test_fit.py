"""fit's numbers against the NumPy reference MLP (``fitref.Ref``) on every backend.

Batch modes (stochastic, mini-batch, full batch; ordered or shuffled), optimizers and losses
by name, regression and binary-logit losses with their metrics, and History's gradient norms.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from fitref import Ref, assert_weights, model_weights, ref_weights


@pytest.mark.parametrize("batch", [1, 7, None], ids=["stochastic", "minibatch", "fullbatch"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_batch_modes_match_numpy_sgd(backend, small, batch, shuffle):
    x, y = small
    model = ap.mlp([5, 6, 3], seed=0, backend=backend)
    ref = Ref(model)
    logs = ref.sgd(x, y, lr=0.1, epochs=2, batch=batch, shuffle=shuffle, seed=7)
    h = ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=ap.SGD(model.parameters(), lr=0.1),
        epochs=2,
        batch_size=batch,
        shuffle=shuffle,
        seed=7,
        progress=None,
    )
    assert_weights(model_weights(model), ref_weights(ref))
    np.testing.assert_allclose(h.loss, [loss for loss, _ in logs], rtol=1e-10)
    np.testing.assert_allclose(h.accuracy, [acc for _, acc in logs], rtol=1e-12)
    assert h.epochs == [1, 2]


def test_batch_larger_than_data_is_one_batch(small):
    x, y = small
    a = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    b = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    ha = ap.fit(
        a, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=1000, progress=None
    )
    hb = ap.fit(
        b, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=None, progress=None
    )
    assert_weights(model_weights(a), model_weights(b), exact=True)
    assert ha.loss == hb.loss


def test_optimizer_and_loss_by_name(small):
    x, y = small
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    ref = Ref(m)
    ref.sgd(x, y, lr=0.01, epochs=1, batch=8, shuffle=False, seed=None)  # SGD's default lr
    ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=1,
        batch_size=8,
        shuffle=False,
        progress=None,
    )
    assert_weights(model_weights(m), ref_weights(ref))
    a = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    h = ap.fit(a, x, y, loss="softmax-ce", optimizer="adam", epochs=1, metrics=None, progress=None)
    assert h.lr == [0.001]  # Adam's default
    assert "accuracy" not in h.history


def test_regression_loss_and_metrics(backend):
    x, y, _, _ = ap.data.make_linear_regression(n=50, features=3, seed=0)
    m = ap.mlp([3, 1], seed=5, backend=backend)
    w = backend.to_host(m[0].weight.data)
    b = backend.to_host(m[0].bias.data)
    pred = x.astype(np.float64) @ w + b
    h = ap.fit(
        m,
        x,
        y[:, 0],
        loss="mse",
        optimizer="sgd",
        epochs=1,
        batch_size=None,
        metrics=("mse", "mae"),
        progress=None,
    )
    err = pred - y.astype(np.float64)
    # full batch: the epoch's numbers are those of the initial weights
    assert h.loss[0] == pytest.approx(np.mean(err**2), rel=1e-10)
    assert h.mse[0] == pytest.approx(np.mean(err**2), rel=1e-10)
    assert h.mae[0] == pytest.approx(np.mean(np.abs(err)), rel=1e-10)
    h2 = ap.fit(
        m,
        x,
        y,
        loss="mse",
        optimizer=ap.SGD(m.parameters(), lr=0.05),
        epochs=20,
        batch_size=10,
        progress=None,
    )
    assert "accuracy" not in h2.history  # the default accuracy is dropped for regression
    assert h2.loss[-1] < min(0.05, 0.1 * h.loss[0])  # the noise floor is 0.1² = 0.01


def test_binary_logits_accuracy_threshold(backend):
    x, y = ap.data.make_logistic_regression(n=60, features=4, seed=0)
    m = ap.mlp([4, 1], seed=1, backend=backend)
    z = x.astype(np.float64) @ backend.to_host(m[0].weight.data) + backend.to_host(m[0].bias.data)
    h = ap.fit(
        m,
        x,
        y,
        loss=ap.BinaryCrossEntropy(from_logits=True),
        optimizer="sgd",
        epochs=1,
        batch_size=None,
        progress=None,
    )
    assert h.accuracy[0] == pytest.approx(np.mean((z[:, 0] > 0) == (y == 1)))


def test_grad_norms_are_those_of_the_last_step(backend, small):
    x, y = small
    m = ap.mlp([5, 6, 4, 3], activation="sigmoid", seed=0, backend=backend)
    ref = Ref(m, act="sigmoid")
    _, _, gW, _ = ref.loss_and_grads(x, y)  # full batch, one epoch: the gradient at the start
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=None, progress=None
    )
    assert h.layers == ["0.weight", "2.weight", "4.weight"]  # the weights, by dotted name
    np.testing.assert_allclose(h.grad_norm[0], [np.linalg.norm(g) for g in gW], rtol=1e-10)


def test_grad_norms_show_vanishing_gradients_in_a_deep_sigmoid_net(rng):
    x = rng.standard_normal((128, 16))
    y = rng.integers(0, 2, size=128)
    m = ap.mlp([16] * 8 + [2], activation="sigmoid", seed=0, dtype="float64", backend="numpy")
    h = ap.fit(m, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=32, progress=None)
    norms = h.grad_norm[-1]
    assert len(norms) == 8
    assert norms[0] < 0.01 * norms[-1]  # σ' ≤ 1/4 per layer: the first layer barely learns
    relu = ap.mlp([16] * 8 + [2], seed=0, dtype="float64", backend="numpy")
    h_relu = ap.fit(
        relu, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=32, progress=None
    )
    assert h_relu.grad_norm[-1][0] > 0.1 * h_relu.grad_norm[-1][-1]
