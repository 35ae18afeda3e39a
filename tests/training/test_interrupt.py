"""Ctrl-C during fit: from a callback, before a step's update (rolled back) or as SIGINT during
a step (the step finishes); fit returns the History so far and restores the SIGINT handler.
"""

from __future__ import annotations

import signal

import numpy as np

import arrayprop as ap
from fitref import Ref, assert_weights, interrupting_step, model_weights, ref_weights


def test_keyboard_interrupt_from_a_callback_returns_history(backend, small, tmp_path):
    from arrayprop import checkpoint

    x, y = small

    def interrupt(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    m = ap.mlp([5, 6, 3], seed=0, backend=backend)
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=5,
        batch_size=4,
        callbacks=[ap.LambdaCallback(interrupt)],
        checkpoint=tmp_path / "c.npz",
        progress=None,
    )
    assert h.interrupted and h.epochs == [1, 2]
    assert checkpoint.load(tmp_path / "c.npz", backend=backend).extra["fit"]["epoch"] == 2
    out = backend.to_host(ap.predict(m, x))  # the model is usable
    assert np.isfinite(out).all()


def test_keyboard_interrupt_inside_a_step_rolls_it_back(backend, small):
    x, y = small
    m = ap.mlp([5, 6, 3], seed=0, backend=backend)
    ref = Ref(m)
    ref.sgd(x, y, lr=0.1, epochs=3, batch=4, shuffle=True, seed=2, steps=8)
    opt = ap.SGD(m.parameters(), lr=0.1)
    interrupting_step(opt, 9, before=True)  # the 9th step never updates
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer=opt, epochs=3, batch_size=4, seed=2, progress=None
    )
    assert h.interrupted and h.epochs == [1]  # 6 steps per epoch: stopped in epoch 2
    assert_weights(model_weights(m), ref_weights(ref))


def test_sigint_finishes_the_running_step(small):
    x, y = small
    be = ap.get_backend("numpy", dtype="float64")
    m = ap.mlp([5, 6, 3], seed=0, backend=be)
    ref = Ref(m)
    ref.sgd(x, y, lr=0.1, epochs=3, batch=4, shuffle=True, seed=2, steps=9)
    opt = ap.SGD(m.parameters(), lr=0.1)
    interrupting_step(opt, 9, before=False)  # Ctrl-C arrives during the 9th step
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer=opt, epochs=3, batch_size=4, seed=2, progress=None
    )
    assert h.interrupted and h.epochs == [1]
    assert_weights(model_weights(m), ref_weights(ref))  # 9 whole steps
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
