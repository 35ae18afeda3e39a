"""Learning-rate schedules against torch.optim.lr_scheduler and their closed forms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import CheckpointError
from arrayprop.nn.parameter import Parameter
from arrayprop.optim import SGD, get_optimizer, optimizer_from_config
from arrayprop.optim.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    SequentialLR,
    StepLR,
    with_warmup,
)

EPOCHS = 30
LR = 0.1


def _optimizer(lr: float = LR) -> SGD:
    be = ap.get_backend("numpy", dtype="float64")
    return SGD([Parameter(be.asarray(np.zeros(3)))], lr=lr)


#: name -> (build ours from an optimizer, build torch's from a torch optimizer)
CASES = {
    "step": (
        lambda o: StepLR(o, step_size=7, gamma=0.5),
        lambda t, o: t.StepLR(o, step_size=7, gamma=0.5),
    ),
    "exponential": (
        lambda o: ExponentialLR(o, gamma=0.9),
        lambda t, o: t.ExponentialLR(o, gamma=0.9),
    ),
    "cosine": (
        lambda o: CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
        lambda t, o: t.CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
    ),
    "cosine-to-zero": (
        lambda o: CosineAnnealingLR(o, T_max=30),
        lambda t, o: t.CosineAnnealingLR(o, T_max=30),
    ),
    "warmup": (
        lambda o: LinearWarmup(o, warmup_steps=8, start_factor=0.1),
        lambda t, o: t.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=8),
    ),
    "warmup-cosine": (
        lambda o: with_warmup(CosineAnnealingLR(o, T_max=20), warmup_steps=5, start_factor=0.2),
        lambda t, o: t.SequentialLR(
            o,
            [t.LinearLR(o, start_factor=0.2, total_iters=5), t.CosineAnnealingLR(o, T_max=20)],
            milestones=[5],
        ),
    ),
    "warmup-step-exp": (
        lambda o: SequentialLR(
            o,
            [LinearWarmup(o, 4, 0.5), StepLR(o, step_size=3, gamma=0.7), ExponentialLR(o, 0.8)],
            milestones=[4, 15],
        ),
        lambda t, o: t.SequentialLR(
            o,
            [
                t.LinearLR(o, start_factor=0.5, total_iters=4),
                t.StepLR(o, step_size=3, gamma=0.7),
                t.ExponentialLR(o, gamma=0.8),
            ],
            milestones=[4, 15],
        ),
    ),
}


def _torch_lrs(case: str) -> list[float]:
    """torch's learning rate at epochs 0..EPOCHS for the same settings."""
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=LR)
    sched = CASES[case][1](torch.optim.lr_scheduler, opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(EPOCHS):
        opt.step()  # torch warns when the schedule steps before the optimizer
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case: str) -> None:
    want = _torch_lrs(case)
    opt = _optimizer()
    sched = CASES[case][0](opt)
    got = [opt.lr]
    for _ in range(EPOCHS):
        sched.step()
        assert sched.get_lr() == opt.lr
        got.append(opt.lr)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-16)


def test_closed_forms() -> None:
    """The documented formulas, written out here."""
    for t in range(EPOCHS + 1):
        assert StepLR(_optimizer(), 4, 0.3).lr_at(t) == pytest.approx(LR * 0.3 ** (t // 4))
        assert ExponentialLR(_optimizer(), 0.95).lr_at(t) == pytest.approx(LR * 0.95**t)
        cos = 1e-4 + (LR - 1e-4) * (1 + math.cos(math.pi * t / 12)) / 2
        assert CosineAnnealingLR(_optimizer(), 12, 1e-4).lr_at(t) == pytest.approx(cos)
        # start_factor 0 (which torch's LinearLR refuses): η_t = η₀ min(t, W) / W.
        assert LinearWarmup(_optimizer(), 6).lr_at(t) == pytest.approx(LR * min(t, 6) / 6)


def test_construction_sets_the_first_rate_and_steps_drive_sgd() -> None:
    be = ap.get_backend("numpy", dtype="float64")
    p = Parameter(be.asarray(np.zeros(2)))
    opt = SGD([p], lr=0.5)
    sched = LinearWarmup(opt, warmup_steps=4)
    assert opt.lr == 0.0 and opt.initial_lr == 0.5
    p.grad = be.asarray(np.ones(2))
    for _ in range(3):
        sched.step()
        opt.step()
    # W = −Σ η_t g over t = 1..3 with η_t = 0.5 t / 4.
    np.testing.assert_allclose(p.data, -0.5 * (1 + 2 + 3) / 4 * np.ones(2))


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_round_trip(case: str) -> None:
    build = CASES[case][0]
    opt = _optimizer()
    straight = build(opt)
    want = []
    for _ in range(EPOCHS):
        straight.step()
        want.append(opt.lr)

    opt = _optimizer()
    sched = build(opt)
    for _ in range(12):
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))
    resumed_opt = _optimizer()
    resumed = build(resumed_opt)
    resumed.load_state_dict(saved)
    assert resumed_opt.lr == want[11] and resumed.steps == 12
    got = want[:12]
    for _ in range(EPOCHS - 12):
        resumed.step()
        got.append(resumed_opt.lr)
    assert got == want


def test_resume_optimizer_and_schedule_together() -> None:
    """Checkpoint both mid-run (lr at 0, the cosine's end), rebuild from config, continue."""
    be = ap.get_backend("numpy", dtype="float64")
    gen = np.random.default_rng(2)
    grads = [gen.standard_normal(4) for _ in range(16)]

    def build(w):
        opt = get_optimizer("adam", [Parameter(be.asarray(np.array(w)))], lr=0.05)
        return opt, with_warmup(CosineAnnealingLR(opt, T_max=6), warmup_steps=2)

    def run(opt, sched, gs):
        for g in gs:
            opt.params[0].grad = be.asarray(g)
            opt.step()
            sched.step()

    opt, sched = build(np.ones(4))
    run(opt, sched, grads)
    want = opt.params[0].data.copy()

    opt, sched = build(np.ones(4))
    run(opt, sched, grads[:8])
    assert opt.lr == 0.0
    saved_opt = opt.state_dict()
    saved_sched = json.loads(json.dumps(sched.state_dict()))
    hyper = json.loads(json.dumps(saved_opt["hyperparameters"]))
    params = [Parameter(opt.params[0].data.copy())]
    opt2 = optimizer_from_config(params, saved_opt["type"], hyper)
    sched2 = with_warmup(CosineAnnealingLR(opt2, T_max=6), warmup_steps=2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    run(opt2, sched2, grads[8:])
    np.testing.assert_array_equal(params[0].data, want)


def test_load_state_dict_rejects_mismatches() -> None:
    saved = StepLR(_optimizer(), step_size=3).state_dict()
    with pytest.raises(CheckpointError, match="expected a state dict of ExponentialLR"):
        ExponentialLR(_optimizer(), 0.9).load_state_dict(saved)
    with pytest.raises(CheckpointError, match="hyperparameters"):
        StepLR(_optimizer(), step_size=4).load_state_dict(saved)
    with pytest.raises(CheckpointError, match="not a schedule state dict"):
        StepLR(_optimizer(), step_size=3).load_state_dict({"type": "StepLR"})
    chained = with_warmup(StepLR(_optimizer(), 3), 2).state_dict()
    chained["schedules"].pop()
    o = _optimizer()
    with pytest.raises(CheckpointError, match="chains 1 schedules, this one 2"):
        with_warmup(StepLR(o, 3), 2).load_state_dict(chained)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda o: StepLR(o, step_size=0), r"^StepLR: step_size must be an int >= 1, got 0$"),
        (lambda o: StepLR(o, step_size=2.5), r"^StepLR: step_size must be an int >= 1, got 2\.5$"),
        (
            lambda o: ExponentialLR(o, gamma=-0.5),
            r"^ExponentialLR: gamma must be a finite number >= 0, got -0\.5$",
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=0),
            r"^CosineAnnealingLR: T_max must be an int >= 1, got 0$",
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=5, eta_min=-1.0),
            r"^CosineAnnealingLR: eta_min must be a finite number >= 0, got -1\.0$",
        ),
        (
            lambda o: LinearWarmup(o, warmup_steps=0),
            r"^LinearWarmup: warmup_steps must be an int >= 1, got 0$",
        ),
        (
            lambda o: LinearWarmup(o, 5, start_factor=1.5),
            r"^LinearWarmup: start_factor must be a finite number in \[0, 1\], got 1\.5$",
        ),
        (
            lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(o, 2)], [0]),
            r"^SequentialLR: milestone must be an int >= 1, got 0$",
        ),
        (lambda o: SequentialLR(o, [StepLR(o, 2)], [3]), "1 schedules need 0 milestones"),
        (lambda o: SequentialLR(o, [], []), "at least one schedule"),
        (lambda o: SequentialLR(o, [StepLR(_optimizer(), 2)], []), "not a Schedule of this"),
        (
            lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(o, 2), StepLR(o, 2)], [5, 5]),
            "milestones must increase",
        ),
    ],
)
def test_validation(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(_optimizer())


def test_needs_an_optimizer() -> None:
    with pytest.raises(TypeError, match="expected an Optimizer, got float"):
        StepLR(0.1, step_size=3)
