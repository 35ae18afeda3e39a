"""Checkpoints during fit and resume: a resumed run is exactly the uninterrupted one (SGD with
momentum and a schedule, Adam), ``checkpoint_every``, resume without a file, and a resume
mid-epoch with other batches is refused.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import CheckpointError
from fitref import assert_weights, interrupting_step, model_weights


def _resume_setup(backend, optimizer="sgd"):
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    if optimizer == "adam":
        opt = ap.Adam(m.parameters(), lr=0.01)
    else:
        opt = ap.SGD(m.parameters(), lr=0.1, momentum=0.9)
    return m, opt, ap.StepLR(opt, step_size=1, gamma=0.7)


def _resume_fit(m, opt, sched, x, y, xv, yv, **kw):
    return ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        schedule=sched,
        epochs=4,
        batch_size=16,
        seed=11,
        validation_data=(xv, yv),
        progress=None,
        **kw,
    )


@pytest.mark.parametrize("at", [2 * 6 + 4, 2 * 6 + 1], ids=["mid-epoch", "epoch-start"])
def test_resume_gives_exactly_the_uninterrupted_run(backend, digits, tmp_path, at):
    x, y, xv, yv = digits[0][:96], digits[1][:96], digits[2][:30], digits[3][:30]
    m, opt, sched = _resume_setup(backend)
    full = _resume_fit(m, opt, sched, x, y, xv, yv)
    w_full = model_weights(m)

    path = tmp_path / "ck.npz"
    m, opt, sched = _resume_setup(backend)
    interrupting_step(opt, at, before=True)
    part = _resume_fit(m, opt, sched, x, y, xv, yv, checkpoint=path)
    assert part.interrupted and part.epochs == [1, 2]

    # a fresh process: new model, optimizer and schedule; other seed (the checkpoint decides)
    m, opt, sched = _resume_setup(backend)
    rest = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        schedule=sched,
        epochs=4,
        batch_size=16,
        seed=999,
        validation_data=(xv, yv),
        progress=None,
        checkpoint=path,
        resume=True,
    )
    exact = backend.name == "numpy"
    assert_weights(model_weights(m), w_full, exact=exact, rtol=1e-12)
    assert rest.epochs == [1, 2, 3, 4] and not rest.interrupted
    assert rest.lr == full.lr
    np.testing.assert_allclose(rest.loss, full.loss, rtol=1e-12)
    np.testing.assert_allclose(rest.val_loss, full.val_loss, rtol=1e-12)
    assert rest.accuracy == pytest.approx(full.accuracy, rel=1e-12)


def test_resume_with_adam(digits, tmp_path):
    """Adam's moments and per-parameter step counters go through the checkpoint too."""
    be = ap.get_backend("numpy", dtype="float64")
    x, y, xv, yv = digits[0][:192], digits[1][:192], digits[2][:50], digits[3][:50]
    m, opt, sched = _resume_setup(be, "adam")
    _resume_fit(m, opt, sched, x, y, xv, yv)
    w_full = model_weights(m)
    m, opt, sched = _resume_setup(be, "adam")
    interrupting_step(opt, 30, before=True)
    _resume_fit(m, opt, sched, x, y, xv, yv, checkpoint=tmp_path / "a.npz")
    m, opt, sched = _resume_setup(be, "adam")
    _resume_fit(m, opt, sched, x, y, xv, yv, checkpoint=tmp_path / "a.npz", resume=True)
    assert_weights(model_weights(m), w_full, exact=True)


def test_checkpoint_every_and_resume_without_a_file(small, tmp_path):
    from arrayprop import checkpoint

    x, y = small
    path = tmp_path / "ck.npz"
    seen = []
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    spy = ap.LambdaCallback(lambda e, logs: seen.append(path.exists()))
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=5,
        batch_size=4,
        checkpoint=path,
        checkpoint_every=3,
        resume=True,
        callbacks=[spy],
        progress=None,
    )
    # no file at the start: resume=True starts afresh; saved after epoch 3 and at the end
    assert h.epochs == [1, 2, 3, 4, 5]
    assert seen == [False, False, False, True, True]
    saved = checkpoint.load(path, backend="numpy")
    assert saved.extra["fit"]["epoch"] == 5
    assert saved.extra["fit"]["history"]["epochs"] == [1, 2, 3, 4, 5]
    assert_weights(model_weights(saved.model), model_weights(m), exact=True)
    # resuming a finished run trains nothing more
    again = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=5,
        batch_size=4,
        checkpoint=path,
        resume=True,
        progress=None,
    )
    assert again.epochs == h.epochs and again.loss == h.loss


def test_resume_mid_epoch_needs_the_same_batches(small, tmp_path):
    x, y = small
    path = tmp_path / "ck.npz"
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    opt = ap.SGD(m.parameters(), lr=0.1)
    interrupting_step(opt, 3, before=True)
    ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=2,
        batch_size=4,
        checkpoint=path,
        progress=None,
    )
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    with pytest.raises(
        CheckpointError, match="saved within an epoch of 23 samples in batches of 4"
    ):
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=2,
            batch_size=5,
            checkpoint=path,
            resume=True,
            progress=None,
        )
