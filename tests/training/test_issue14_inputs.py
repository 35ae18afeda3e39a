"""Smaller bad inputs and faults of issue 14 (items 10 and 11): seeds, initializers of the
wrong shape, the History of a run interrupted in its first epoch, streaming with more samples
than the budget's order can hold."""

from __future__ import annotations

import numbers

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.data.adapter import Expect, prepare
from arrayprop.errors import ShapeError


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True, [1, -2], object()])
@pytest.mark.parametrize(
    "call",
    [
        lambda seed: ap.mlp([3, 2], seed=seed),
        lambda seed: ap.Dense(3, 2, seed=seed),
        lambda seed: ap.data.make_xor(seed=seed),
        lambda seed: ap.fit(
            ap.mlp([2, 2], seed=0),
            np.zeros((4, 2)),
            np.arange(4) % 2,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=1,
            seed=seed,
            progress=None,
        ),
    ],
    ids=["mlp", "Dense", "make_xor", "fit"],
)
def test_a_bad_seed_is_refused_with_arrayprops_message(call, seed):
    with pytest.raises(ValueError, match=r"seed must be an int >= 0, a numpy.random.Generator"):
        call(seed)


@pytest.mark.parametrize("good", [0, np.int64(3), None, np.random.default_rng(0)])
def test_good_seeds_still_work(good):
    ap.mlp([3, 2], seed=good)


@pytest.mark.parametrize(
    "make",
    [
        lambda init: ap.Dense(4, 3, init=init),
        lambda init: ap.Conv2D(1, 2, 3, init=init),
        lambda init: ap.Embedding(5, 3, init=init),
    ],
    ids=["Dense", "Conv2D", "Embedding"],
)
@pytest.mark.parametrize(
    "wrong", [lambda s: np.zeros(s[::-1]), lambda s: np.zeros(s[0] * s[1]), lambda s: 0.0]
)
def test_an_initializer_of_the_wrong_shape_is_refused(make, wrong):
    def init(shape, rng):
        return wrong(shape) if shape[0] != shape[1] else np.zeros((1,))

    with pytest.raises(ShapeError, match=r"initializer 'init' returned an array of shape"):
        make(init)


def test_history_of_a_run_interrupted_in_its_first_epoch_has_empty_columns(backend):
    def interrupt(epoch):
        raise KeyboardInterrupt

    model = ap.mlp([2, 2], seed=0, backend=backend)
    x, y = np.zeros((8, 2)), np.arange(8) % 2
    cb = ap.LambdaCallback(on_epoch_begin=interrupt)
    h = ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, progress=None,
               callbacks=[cb], validation_data=(x, y))  # fmt: skip
    assert h.interrupted
    assert h.loss == [] and h.accuracy == [] and h.val_loss == [] and h.lr == []
    with pytest.raises(AttributeError, match="History has no 'los'"):
        h.los  # noqa: B018 (a typo still fails)


def test_streaming_more_samples_than_the_order_budget_keeps_chunks_and_warns():
    n, budget = 4096, 8 * 4096 - 8  # the int64 order alone takes more than the budget
    x, y = np.zeros((n, 2)), np.arange(n) % 2
    model = ap.mlp([2, 2], seed=0, backend=ap.get_backend("array_api_strict", dtype="float64"))

    d = prepare(model.backend, x, y, Expect(2, 2, "Dense(2, 2)"), what="fit", budget=budget)
    assert not d.resident
    assert d.chunk_rows(8) >= 8 * 20  # was one batch: a host→device copy per step
    message = r"shuffled order of 4096 samples takes 32768 bytes, more than max_device_bytes=32760"
    with pytest.warns(UserWarning, match=message):
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=8,
               max_device_bytes=budget, progress=None)  # fmt: skip


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True])
def test_train_step_refuses_a_bad_seed(seed):
    m = ap.mlp([2, 2], seed=0)
    opt = ap.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"train_step: seed must be an int >= 0"):
        ap.train_step(
            m, ap.SoftmaxCrossEntropy(), opt, np.ones((2, 2)), np.array([0, 1]), seed=seed
        )
    assert opt.steps == 0


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda i: ap.Conv2D(i(1), i(2), i(3), stride=i(1), padding=i(1)), (2, 1, 3, 3)),
        (lambda i: ap.Conv2D(1, 2, (i(3), i(2))), (2, 1, 3, 2)),
        (lambda i: ap.MaxPool2D(i(2), stride=i(1)), None),
        (lambda i: ap.AvgPool2D((i(2), i(2))), None),
        (lambda i: ap.LayerNorm(i(4)), (4,)),
        (lambda i: ap.LayerNorm((i(2), i(3))), (2, 3)),
        (lambda i: ap.Standardize(i(3)), None),
        (lambda i: ap.Dense(i(3), i(2)), (3, 2)),
        (lambda i: ap.BatchNorm1d(i(3)), (3,)),
        (lambda i: ap.Embedding(i(5), i(2)), (5, 2)),
    ],
    ids=[
        "Conv2D",
        "Conv2D-pair",
        "MaxPool2D",
        "AvgPool2D",
        "LayerNorm",
        "LayerNorm-tuple",
        "Standardize",
        "Dense",
        "BatchNorm1d",
        "Embedding",
    ],
)
@pytest.mark.parametrize("kind", [np.int64, np.int32, int])
def test_numpy_integers_are_ints_for_every_layer_size(make, shape, kind):
    """Sizes computed with NumPy (np.int64) are ints: every layer takes them, and stores ints."""
    layer = make(kind)
    if shape is not None:
        first = next(iter(layer.parameters()))
        assert tuple(first.data.shape) == shape
    for value in vars(layer).values():
        if isinstance(value, tuple):
            assert all(type(v) is int for v in value if isinstance(v, numbers.Integral))


def test_a_ragged_list_is_refused_by_name():
    m = ap.mlp([2, 2], seed=0)
    with pytest.raises(ShapeError, match=r"fit: x: a ragged sequence .* give rows of one shape"):
        ap.fit(m, [[1.0, 2.0], [3.0]], [0, 1], loss="softmax-ce", optimizer="sgd", epochs=1)
    with pytest.raises(ShapeError, match=r"ragged sequence"):
        ap.predict(m, [[1.0, 2.0], [3.0]])
