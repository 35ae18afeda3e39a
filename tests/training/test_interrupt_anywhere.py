"""A run records the step it applied or none of it, wherever an interrupt lands.

- Two Ctrl-Cs (SIGINT to this process) are sent at successive line events of the training
  loop, the optimizer and the schedule, at points spread over a whole run (a trace function
  counts the lines): whatever fit returns or raises, resuming from its checkpoint reaches
  bit-identical weights and the same History (epoch losses to rounding) as an
  uninterrupted run. Before the fix, a second
  Ctrl-C landing between ``optimizer.step()`` and the step count left a checkpoint one step
  behind its weights.
- A KeyboardInterrupt raised by code inside ``optimizer.step()`` (before any parameter, between
  two, after the last) leaves parameters that may hold part of an update: fit warns, writes no
  checkpoint, and resuming from the last complete one is exact.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.optim import optimizer as optimizer_module
from arrayprop.optim import schedules as schedules_module
from arrayprop.optim import sgd as sgd_module
from arrayprop.training import api as api_module
from arrayprop.training import loop as loop_module

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs SIGINT to this process")

TRACED = {
    str(Path(m.__file__).resolve())
    for m in (loop_module, api_module, optimizer_module, sgd_module, schedules_module)
}
EPOCHS = 3
TRIALS = 60


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 3)), rng.integers(0, 2, 12)


def _fit(path, *, resume=False):
    x, y = _data()
    model = ap.mlp([3, 4, 2], seed=0, backend="numpy", dtype="float64")
    opt = ap.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = ap.StepLR(opt, step_size=1, gamma=0.7)
    history = ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=EPOCHS,
                     batch_size=4, seed=5, progress=None, checkpoint=path, resume=resume,
                     schedule=sched)  # fmt: skip
    return model, history


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    model, history = _fit(path)
    return _weights(model), history.loss


def _traced(fire_at: set[int], action):
    """A trace function calling ``action()`` at the line events numbered in ``fire_at``."""
    count = [0]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
            if count[0] in fire_at:
                action()
        return local

    def trace(frame, event, arg):
        if frame.f_code.co_filename in TRACED:
            return local
        return None

    return trace, count


def _lines_in_a_run(tmp_path) -> int:
    trace, count = _traced(set(), lambda: None)
    sys.settrace(trace)
    try:
        _fit(tmp_path / "count.npz")
    finally:
        sys.settrace(None)
    return count[0]


@posix_only
def test_two_ctrl_cs_anywhere_never_record_half_a_step(tmp_path, reference):
    ref_weights, ref_loss = reference
    total = _lines_in_a_run(tmp_path)
    points = np.unique(np.linspace(1, total - 1, TRIALS).astype(int))
    interrupted = 0
    for n in points:
        path = tmp_path / f"run{n}.npz"
        trace, _ = _traced({int(n), int(n) + 1}, lambda: os.kill(os.getpid(), signal.SIGINT))
        sys.settrace(trace)
        try:
            _, history = _fit(path)
            interrupted += history.interrupted
        except KeyboardInterrupt:
            interrupted += 1  # before fit's handler, or during its last save: file as it was
        finally:
            sys.settrace(None)
        model, history = _fit(path, resume=True)
        for a, b in zip(_weights(model), ref_weights, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"Ctrl-C at line event {n} of {total}")
        # The epoch losses too (a resumed epoch sums its loss in two parts: rounding apart).
        np.testing.assert_allclose(history.loss, ref_loss, rtol=1e-12, err_msg=f"event {n}")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert interrupted >= len(points) // 2, interrupted


@pytest.mark.parametrize("at", ["before-any", "between", "after-last"])
def test_a_keyboard_interrupt_inside_the_update_records_none_of_it(
    tmp_path, reference, monkeypatch, at
):
    ref_weights, ref_loss = reference
    path = tmp_path / "run.npz"
    original = sgd_module.SGD._update
    calls = {"n": 0}
    # Step 5 (epoch 2) updates parameters 0..3: interrupt at the update of parameter 0 after
    # counting the step, of parameter 2 (two applied), or after all four.
    fire = {"before-any": 4 * 4 + 1, "between": 4 * 4 + 3, "after-last": 4 * 5 + 1}[at]

    def update(self, i, w, g):
        calls["n"] += 1
        if calls["n"] == fire:
            raise KeyboardInterrupt
        return original(self, i, w, g)

    monkeypatch.setattr(sgd_module.SGD, "_update", update)
    before = None
    with pytest.warns(RuntimeWarning, match="may hold part of an update, so no checkpoint"):
        before = path.read_bytes() if path.exists() else None
        _, history = _fit(path)
    assert history.interrupted
    monkeypatch.undo()
    # The checkpoint is the one of the end of epoch 1 (the last complete state).
    assert before is None
    model, history = _fit(path, resume=True)
    for a, b in zip(_weights(model), ref_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(history.loss, ref_loss, rtol=1e-12)
