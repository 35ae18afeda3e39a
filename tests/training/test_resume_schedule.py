"""Resuming needs the learning-rate schedule the run was saved with, and says what to pass.

Without it, a resumed run trained on at whatever rate the schedule had reached (0.0 at the end
of a cosine) with no word; with another one (a cosine over other ``--epochs``) the message did
not say what to do. Each schedule kind, each direction (saved with / without), and the command
line's flags.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import cli
from arrayprop.errors import CheckpointError

N = 24

SCHEDULES = {
    "step": lambda opt, epochs: ap.StepLR(opt, step_size=1, gamma=0.5),
    "exponential": lambda opt, epochs: ap.ExponentialLR(opt, gamma=0.5),
    "cosine": lambda opt, epochs: ap.CosineAnnealingLR(opt, T_max=epochs),
    "warmup-cosine": lambda opt, epochs: ap.with_warmup(ap.CosineAnnealingLR(opt, epochs), 1),
}

SAVED_TYPE = {"step": "StepLR", "exponential": "ExponentialLR", "cosine": "CosineAnnealingLR",
              "warmup-cosine": "SequentialLR"}  # fmt: skip


def _fit(path, schedule, epochs, *, resume=False):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((N, 4)), rng.integers(0, 3, N)
    model = ap.mlp([4, 5, 3], seed=0, backend="numpy")
    opt = ap.SGD(model.parameters(), lr=0.1)
    sched = None if schedule is None else SCHEDULES[schedule](opt, epochs)
    weights = [p.data.copy() for p in model.parameters()]
    try:
        ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=epochs, batch_size=8,
               seed=1, progress=None, checkpoint=path, resume=resume, schedule=sched)  # fmt: skip
    finally:
        _fit.unchanged = all(
            np.array_equal(p.data, w) for p, w in zip(model.parameters(), weights, strict=True)
        )


@pytest.mark.parametrize("kind", list(SCHEDULES))
def test_resuming_without_the_saved_schedule_is_refused_saying_what_to_pass(tmp_path, kind):
    path = tmp_path / "run.npz"
    _fit(path, kind, epochs=2)
    with pytest.raises(CheckpointError) as info:
        _fit(path, None, epochs=4, resume=True)
    message = str(info.value)
    assert "saved by a run with the learning-rate schedule" in message
    assert "pass that schedule, built the same way, as schedule=" in message
    assert f"schedule {SAVED_TYPE[kind]}(" in message
    assert _fit.unchanged


def test_resuming_with_a_schedule_a_run_was_saved_without_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    _fit(path, None, epochs=2)
    with pytest.raises(CheckpointError, match=r"resume without schedule= \(the command line: "):
        _fit(path, "cosine", epochs=4, resume=True)
    assert _fit.unchanged


@pytest.mark.parametrize(("saved", "resumed"), [(2, 4), (4, 2)])
def test_another_cosine_length_is_refused_saying_to_keep_the_epochs(tmp_path, saved, resumed):
    path = tmp_path / "run.npz"
    _fit(path, "cosine", epochs=saved)
    with pytest.raises(CheckpointError) as info:
        _fit(path, "cosine", epochs=resumed, resume=True)
    message = str(info.value)
    assert f"resume with CosineAnnealingLR(T_max={saved}, eta_min=0.0)" in message
    assert "resume with the epochs the run was saved with" in message
    assert _fit.unchanged


def test_the_same_schedule_resumes(tmp_path):
    path = tmp_path / "run.npz"
    _fit(path, "cosine", epochs=2)
    _fit(path, "cosine", epochs=2, resume=True)  # nothing left to do, and no complaint


# -- the command line ------------------------------------------------------------------------


def _train(tmp_path, *flags):
    base = ["train", "--dataset", "xor", "--model", "2-4-2", "--no-progress"]
    return cli.main([*base, "--checkpoint", str(tmp_path / "run.npz"), *flags])


@pytest.mark.parametrize(
    ("saved", "resumed", "says"),
    [
        (["--epochs", "2"], ["--epochs", "3"], "resume with --epochs 2 (to train for another"),
        (
            ["--epochs", "2"],
            ["--epochs", "2", "--schedule", "none"],
            "resume with --schedule cosine --epochs 2",
        ),
        (["--epochs", "2", "--schedule", "none"], ["--epochs", "3"], "resume with --schedule none"),
    ],
    ids=["other-epochs", "schedule-dropped", "schedule-added"],
)
def test_cli_resume_says_which_flags_to_pass(tmp_path, capsys, saved, resumed, says):
    assert _train(tmp_path, *saved) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        _train(tmp_path, "--resume", *resumed)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_cli_resume_with_the_same_flags_runs(tmp_path):
    assert _train(tmp_path, "--epochs", "2") == 0
    assert _train(tmp_path, "--epochs", "2", "--resume") == 0
