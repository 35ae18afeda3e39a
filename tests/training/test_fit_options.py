"""fit's Keras-style conveniences: ``validation_split``, per-iteration schedules
(``schedule_interval="step"``), the default metrics of a user's own loss and the double-softmax
warning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import CheckpointError, DataError, ShapeError
from fitref import assert_weights, model_weights


def _fit(model, x, y, **kw):
    kw.setdefault("loss", "softmax-ce")
    kw.setdefault("optimizer", "sgd")
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 16)
    kw.setdefault("seed", 3)
    kw.setdefault("progress", None)
    return ap.fit(model, x, y, **kw)


# -- validation_split -------------------------------------------------------------------------


def test_validation_split_holds_out_the_last_rows(backend, digits):
    """Keras' rule: the last floor-complement rows, before shuffling; on device arrays too."""
    x, y = digits[0][:50], digits[1][:50]
    xd, yd = backend.asarray(x), backend.asarray(y)
    m_split = ap.mlp([64, 8, 10], seed=0, backend=backend)
    h_split = _fit(m_split, xd, yd, validation_split=0.2)
    m_data = ap.mlp([64, 8, 10], seed=0, backend=backend)
    h_data = _fit(m_data, x[:40], y[:40], validation_data=(x[40:], y[40:]))
    assert_weights(model_weights(m_split), model_weights(m_data), exact=False, rtol=1e-12)
    np.testing.assert_allclose(h_split.val_loss, h_data.val_loss, rtol=1e-12)
    assert h_split.val_accuracy == pytest.approx(h_data.val_accuracy, rel=1e-12)


def test_validation_split_takes_floor_like_keras(small):
    x, y = small  # 23 rows: floor(23 * 0.9) = 20 train, 3 validation
    seen = []
    cb = ap.LambdaCallback(on_train_begin=lambda logs: seen.append(logs["samples"]))
    _fit(ap.mlp([5, 3], seed=0, backend="numpy"), x, y, validation_split=0.1, callbacks=[cb])
    assert seen == [20]


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"validation_split": 0.0}, ValueError, r"fit: validation_split must be a finite number"),
        ({"validation_split": 1.0}, ValueError, r"validation_split must be .* in \(0, 1\)"),
        ({"validation_split": "0.1"}, ValueError, r"validation_split must be .*, got '0.1'"),
        (
            {"validation_split": 0.5, "validation_data": "given"},
            ValueError,
            r"give validation_data or validation_split, not both",
        ),
    ],
)
def test_validation_split_checked(small, kw, error, match):
    x, y = small
    if kw.get("validation_data") == "given":
        kw = {**kw, "validation_data": (x, y)}
    with pytest.raises(error, match=match):
        _fit(ap.mlp([5, 3], seed=0, backend="numpy"), x, y, **kw)


def test_validation_split_needs_rows_on_both_sides(small):
    x, y = small
    h = _fit(ap.mlp([5, 3], seed=0, backend="numpy"), x, y, validation_split=0.01, epochs=1)
    assert len(h.val_loss) == 1  # 23 rows, 1 %: floor(22.77) = 22 train, 1 validation
    with pytest.raises(DataError, match=r"leaves 0 for training and 1 for validation"):
        _fit(ap.mlp([5, 3], seed=0, backend="numpy"), x[:1], y[:1], validation_split=0.5)


def test_validation_split_refuses_x_and_y_of_different_lengths(small):
    x, y = small
    with pytest.raises(ShapeError, match=r"x has 23 rows but y has 22"):
        _fit(ap.mlp([5, 3], seed=0, backend="numpy"), x, y[:-1], validation_split=0.2)


# -- schedule_interval ------------------------------------------------------------------------


def _warmup(backend, interval_steps):
    m = ap.mlp([5, 4, 3], seed=0, backend=backend)
    opt = ap.SGD(m.parameters(), lr=0.1)
    sched = ap.with_warmup(ap.CosineAnnealingLR(opt, T_max=interval_steps), warmup_steps=2)
    return m, opt, sched


def test_a_warmup_stepped_per_epoch_spends_epoch_one_at_lr_zero(backend, small):
    """The surprise of the issue, kept as the documented per-epoch behaviour."""
    x, y = small
    m, opt, sched = _warmup(backend, 4)
    before = model_weights(m)
    _fit(m, x, y, optimizer=opt, schedule=sched, epochs=1, batch_size=4)
    assert_weights(model_weights(m), before, exact=True)


def test_schedule_interval_step_steps_after_every_update(backend, small):
    x, y = small  # 23 rows in batches of 4: 6 updates per epoch
    m, opt, sched = _warmup(backend, 20)
    before = model_weights(m)
    lrs = []
    real_step = opt.step

    def step():
        lrs.append(opt.lr)
        real_step()

    opt.step = step
    h = _fit(m, x, y, optimizer=opt, schedule=sched, schedule_interval="step", batch_size=4)
    assert sched.steps == opt.steps == 12
    assert lrs == [sched.lr_at(t) for t in range(12)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.05) and lrs[2] == pytest.approx(0.1)
    assert h.lr == [sched.lr_at(6), sched.lr_at(12)]
    assert not np.array_equal(model_weights(m)[0], before[0])


def test_per_step_schedule_resumes_exactly(small, tmp_path):
    x, y = small
    m, opt, sched = _warmup("numpy", 20)
    full = _fit(m, x, y, optimizer=opt, schedule=sched, schedule_interval="step", epochs=3)
    w_full = model_weights(m)

    path = tmp_path / "ck.npz"
    m, opt, sched = _warmup("numpy", 20)
    _fit(m, x, y, optimizer=opt, schedule=sched, schedule_interval="step", checkpoint=path)
    m, opt, sched = _warmup("numpy", 20)
    rest = _fit(
        m,
        x,
        y,
        optimizer=opt,
        schedule=sched,
        schedule_interval="step",
        epochs=3,
        checkpoint=path,
        resume=True,
    )
    assert_weights(model_weights(m), w_full, exact=True)
    assert rest.lr == full.lr and sched.steps == 3 * 2

    m, opt, sched = _warmup("numpy", 20)
    with pytest.raises(CheckpointError, match=r"resume with schedule_interval='step'"):
        _fit(m, x, y, optimizer=opt, schedule=sched, epochs=3, checkpoint=path, resume=True)


def test_schedule_interval_checked(small):
    x, y = small
    with pytest.raises(ValueError, match=r"schedule_interval must be one of 'epoch', 'step'"):
        _fit(ap.mlp([5, 3], backend="numpy"), x, y, schedule_interval="batch")


# -- default metrics, double softmax ----------------------------------------------------------


class MAE(ap.Loss):
    """A user's own regression loss: mean absolute error."""

    def value_and_grad(self, pred, target):
        xp = pred.__array_namespace__() if hasattr(pred, "__array_namespace__") else np
        diff = pred - target
        n = math.prod(diff.shape)
        return xp.sum(xp.abs(diff)) / n, xp.sign(diff) / n


def test_a_users_own_loss_gets_no_default_accuracy(rng):
    x = rng.standard_normal((20, 3))
    y = rng.standard_normal((20, 2))
    h = _fit(ap.mlp([3, 2], seed=0, backend="numpy"), x, y, loss=MAE(), epochs=1)
    assert "accuracy" not in h.history and "loss" in h.history
    # asked for, it is kept (the user knows their targets)
    labels = rng.integers(0, 2, size=20)
    onehot = np.eye(2)[labels]
    h = _fit(
        ap.mlp([3, 2], seed=0, backend="numpy"),
        x,
        onehot,
        loss=MAE(),
        epochs=1,
        metrics=["accuracy"],
    )
    assert "accuracy" in h.history


@pytest.mark.parametrize("loss", ["softmax-ce", "bce"])
def test_class_losses_keep_the_default_accuracy(rng, loss):
    x = rng.standard_normal((20, 3))
    y = rng.integers(0, 2, size=20)
    if loss == "bce":
        y = y[:, None].astype(float)
        model = ap.mlp([3, 1], output_activation="sigmoid", seed=0, backend="numpy")
    else:
        model = ap.mlp([3, 2], seed=0, backend="numpy")
    h = _fit(model, x, y, loss=loss, epochs=1)
    assert "accuracy" in h.history


def test_softmax_output_into_softmax_ce_warns(small):
    x, y = small
    model = ap.mlp([5, 3], output_activation="softmax", seed=0, backend="numpy")
    with pytest.warns(UserWarning, match=r"ends in a Softmax layer and the loss is softmax-ce"):
        _fit(model, x, y, epochs=1)
    nested = ap.Sequential(ap.Sequential(ap.Dense(5, 3, seed=0, backend="numpy"), ap.Softmax()))
    with pytest.warns(UserWarning, match=r"Softmax layer"):
        _fit(nested, x, y, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit(ap.mlp([5, 3], seed=0, backend="numpy"), x, y, epochs=1)  # logits: no warning
