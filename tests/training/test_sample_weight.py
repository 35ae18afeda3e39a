"""fit(..., sample_weight=w): a weight of k trains as the sample listed k times (full batch,
float64, every backend), the weights follow the samples through shuffling and device chunks,
and bad weights are refused before training starts."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import DataError, NonFiniteError, ShapeError
from fitref import assert_weights, model_weights

COUNTS = np.array([2, 0, 1, 3, 1, 1, 2, 1, 0, 1, 2, 1])


def data(rng, regression: bool):
    x = rng.standard_normal((len(COUNTS), 5))
    y = rng.standard_normal((len(COUNTS), 3)) if regression else rng.integers(0, 3, len(COUNTS))
    return x, y


def train(backend, x, y, loss, optimizer, **kw):
    model = ap.mlp([5, 6, 3], seed=0, backend=backend)
    opt = ap.SGD(model.parameters(), lr=0.1) if optimizer == "sgd" else ap.Adam(model.parameters())
    h = ap.fit(model, x, y, loss=loss, optimizer=opt, epochs=3, progress=None, **kw)
    return model, h


@pytest.mark.parametrize("loss", ["softmax-ce", "mse", "l2"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_weight_of_k_equals_the_sample_k_times(backend, rng, loss, optimizer):
    x, y = data(rng, regression=loss != "softmax-ce")
    rows = np.repeat(np.arange(len(COUNTS)), COUNTS)
    a, ha = train(backend, x, y, loss, optimizer, batch_size=None, sample_weight=COUNTS)
    b, hb = train(backend, x[rows], y[rows], loss, optimizer, batch_size=None)
    assert_weights(model_weights(a), model_weights(b))
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)


def test_unit_weights_change_nothing(backend, small):
    x, y = small
    a, ha = train(backend, x, y, "softmax-ce", "sgd", batch_size=7, seed=3)
    b, hb = train(
        backend, x, y, "softmax-ce", "sgd", batch_size=7, seed=3, sample_weight=np.ones(len(y))
    )
    assert_weights(model_weights(a), model_weights(b))
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)


def test_weights_follow_their_samples_through_shuffled_batches(rng):
    """Mini-batches in a shuffled order: zero-weighted samples are as if they were absent only
    if each weight moved with its own sample (a weight left in place would train on them)."""
    x, y = data(rng, regression=False)
    keep = COUNTS > 0
    w = keep.astype(float)
    # One sample per batch: a zero weight skips the step's gradient, but not the step, so
    # compare against the same order over the kept samples with SGD (no step count effects).
    a = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    ap.fit(
        a,
        x,
        y,
        loss="softmax-ce",
        optimizer=ap.SGD(a.parameters(), lr=0.1),
        epochs=2,
        batch_size=1,
        shuffle=True,
        seed=5,
        progress=None,
        sample_weight=w,
    )
    order_rng = np.random.default_rng(5)
    b = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    opt = ap.SGD(b.parameters(), lr=0.1)
    loss = ap.SoftmaxCrossEntropy()
    for _ in range(2):
        for i in order_rng.permutation(len(y)):
            if keep[i]:
                ap.train_step(b, loss, opt, x[i : i + 1], y[i : i + 1])
    assert_weights(model_weights(a), model_weights(b))


def test_weights_in_device_chunks(backend, rng):
    """Host data larger than the device budget goes in chunks; the weights go along."""
    x, y = data(rng, regression=False)
    big = 10**9
    a, ha = train(
        backend,
        x,
        y,
        "softmax-ce",
        "sgd",
        batch_size=4,
        seed=2,
        sample_weight=COUNTS,
        max_device_bytes=big,
    )
    b, hb = train(
        backend,
        x,
        y,
        "softmax-ce",
        "sgd",
        batch_size=4,
        seed=2,
        sample_weight=COUNTS,
        max_device_bytes=200,
    )
    assert_weights(model_weights(a), model_weights(b))
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)


def test_weights_on_the_device_are_taken(backend, rng):
    x, y = data(rng, regression=False)
    a, _ = train(backend, x, y, "softmax-ce", "sgd", batch_size=None, sample_weight=COUNTS)
    b, _ = train(
        backend,
        x,
        y,
        "softmax-ce",
        "sgd",
        batch_size=None,
        sample_weight=backend.asarray(COUNTS.astype(float)),
    )
    assert_weights(model_weights(a), model_weights(b))


@pytest.mark.parametrize(
    ("w", "error", "match"),
    [
        (np.ones(5), ShapeError, r"fit: sample_weight must have shape \(12,\).*got \(5,\)"),
        (np.ones((12, 1)), ShapeError, r"must have shape \(12,\)"),
        (np.r_[np.ones(11), -1.0], DataError, r"non-negative, got -1.0 at sample 11"),
        (np.r_[np.ones(11), np.nan], NonFiniteError, "sample_weight"),
        (np.zeros(12), DataError, "must not be all zero"),
        (np.array(["a"] * 12), TypeError, "must be real numbers"),
    ],
)
def test_bad_weights_are_refused(rng, w, error, match):
    x, y = data(rng, regression=False)
    model = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    before = model_weights(model)
    with pytest.raises(error, match=match):
        ap.fit(
            model,
            x,
            y,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=1,
            progress=None,
            sample_weight=w,
        )
    assert_weights(model_weights(model), before, exact=True)


def test_a_loss_without_weights_is_refused(rng):
    class Plain(ap.Loss):
        def value_and_grad(self, pred, target):
            return ap.MSE().value_and_grad(pred, target)

    x, y = data(rng, regression=True)
    model = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    with pytest.raises(ValueError, match=r"sample_weight was given but the loss .* takes none"):
        ap.fit(
            model,
            x,
            y,
            loss=Plain(),
            optimizer="sgd",
            epochs=1,
            progress=None,
            sample_weight=np.ones(12),
        )
