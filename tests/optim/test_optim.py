"""Optimizers, their checkpoint state and gradient clipping, against torch.optim.

Every optimizer runs on every backend from the same initial parameters and the same sequence of
gradients as ``torch.optim`` (single-tensor code path, float64); the parameters must agree
after every step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.errors import CheckpointError
from arrayprop.nn.parameter import Parameter
from arrayprop.optim import (
    OPTIMIZERS,
    SGD,
    Adam,
    clip_grad_norm,
    get_optimizer,
    global_grad_norm,
    optimizer_from_config,
)

SHAPES = [(5, 3), (3,), (3, 4), (4,)]
STEPS = 20
#: At this step parameter 1 gets no gradient: per-parameter step counts must stay right.
SKIP = (6, 1)

CASES = {
    "sgd": ("sgd", {"lr": 0.1}),
    "sgd-momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
    "sgd-nesterov": ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    "sgd-decay": ("sgd", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1}),
    "adam": ("adam", {"lr": 0.01}),
    "adam-decay": ("adam", {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}),
    "adam-amsgrad": ("adam", {"lr": 0.01, "amsgrad": True}),
    "adamw": ("adamw", {"lr": 0.01}),
    "adamw-amsgrad": ("adamw", {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}),
    "rmsprop": ("rmsprop", {"lr": 0.01}),
    "rmsprop-full": (
        "rmsprop",
        {"lr": 0.005, "alpha": 0.9, "momentum": 0.7, "weight_decay": 0.05, "centered": True},
    ),
    "adagrad": ("adagrad", {"lr": 0.1}),
    "adagrad-full": (
        "adagrad",
        {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.02, "initial_accumulator_value": 0.3},
    ),
}


def _problem(seed: int = 7) -> tuple[list[np.ndarray], list[list[np.ndarray | None]]]:
    """Initial weights and STEPS gradient lists (one entry per parameter, None = no gradient)."""
    gen = np.random.default_rng(seed)
    w0 = [gen.standard_normal(s) for s in SHAPES]
    grads: list[list[np.ndarray | None]] = [
        [gen.standard_normal(s) for s in SHAPES] for _ in range(STEPS)
    ]
    grads[SKIP[0]][SKIP[1]] = None
    return w0, grads


def _torch_trajectory(name: str, kwargs: dict, w0, grads) -> list[list[np.ndarray]]:
    """The parameters after each step of the torch.optim optimizer of the same name."""
    torch = pytest.importorskip("torch")
    classes = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }
    params = [torch.nn.Parameter(torch.tensor(w, dtype=torch.float64)) for w in w0]
    opt = classes[name](params, foreach=False, **kwargs)
    out = []
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = None if g is None else torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append([p.detach().numpy().copy() for p in params])
    return out


def _params(backend: ap.Backend, weights) -> list[Parameter]:
    # Copies: on NumPy, asarray keeps the host buffer and the update writes into it.
    return [Parameter(backend.asarray(np.array(w, copy=True))) for w in weights]


def _set_grads(backend: ap.Backend, params, step_grads) -> None:
    for p, g in zip(params, step_grads, strict=True):
        p.grad = None if g is None else backend.asarray(g)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_every_step(backend: ap.Backend, case: str) -> None:
    name, kwargs = CASES[case]
    w0, grads = _problem()
    expected = _torch_trajectory(name, kwargs, w0, grads)
    params = _params(backend, w0)
    opt = get_optimizer(name, params, **kwargs)
    for step, step_grads in enumerate(grads):
        _set_grads(backend, params, step_grads)
        opt.step()
        for p, want, g in zip(params, expected[step], step_grads, strict=True):
            np.testing.assert_allclose(
                backend.to_host(p.data), want, rtol=1e-10, atol=1e-12, err_msg=f"step {step + 1}"
            )
            # step() must leave the gradients as they were: callers may still read them.
            if g is not None:
                np.testing.assert_array_equal(backend.to_host(p.grad), g)
    assert opt.steps == STEPS


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_round_trip(backend: ap.Backend, case: str) -> None:
    """Save after 10 steps, restore into a fresh optimizer, 10 more == 20 uninterrupted."""
    name, kwargs = CASES[case]
    w0, grads = _problem(seed=3)

    straight = _params(backend, w0)
    opt = get_optimizer(name, straight, **kwargs)
    for step_grads in grads:
        _set_grads(backend, straight, step_grads)
        opt.step()

    first = _params(backend, w0)
    opt = get_optimizer(name, first, **kwargs)
    for step_grads in grads[:10]:
        _set_grads(backend, first, step_grads)
        opt.step()
    saved = opt.state_dict()
    assert saved["type"] == name and saved["steps"] == 10
    # The hyperparameters survive JSON unchanged; the state is host NumPy arrays.
    hyper = json.loads(json.dumps(saved["hyperparameters"]))
    assert hyper == saved["hyperparameters"]
    for entry in saved["state"]:
        assert all(isinstance(v, np.ndarray) for v in entry.values())

    resumed = _params(backend, [backend.to_host(p.data) for p in first])
    opt2 = optimizer_from_config(resumed, saved["type"], hyper)
    opt2.load_state_dict(saved)
    for step_grads in grads[10:]:
        _set_grads(backend, resumed, step_grads)
        opt2.step()
    assert opt2.steps == STEPS
    for a, b in zip(resumed, straight, strict=True):
        if backend.name == "numpy":
            np.testing.assert_array_equal(a.data, b.data)
        else:
            np.testing.assert_allclose(
                backend.to_host(a.data), backend.to_host(b.data), rtol=1e-14, atol=1e-15
            )


def test_state_dict_is_a_snapshot(backend: ap.Backend) -> None:
    """Later steps do not change a saved state dict, and loading copies it."""
    w0, grads = _problem()
    params = _params(backend, w0)
    opt = Adam(params, lr=0.01)
    _set_grads(backend, params, grads[0])
    opt.step()
    saved = opt.state_dict()
    kept = {k: v.copy() for k, v in saved["state"][0].items()}
    opt.load_state_dict(saved)
    _set_grads(backend, params, grads[1])
    opt.step()
    for k, v in kept.items():
        np.testing.assert_array_equal(saved["state"][0][k], v)
    assert int(saved["state"][0]["step"]) == 1 and opt.state[0]["step"] == 2


def _adam_after_one_step(backend: ap.Backend, **kwargs) -> Adam:
    w0, grads = _problem()
    params = _params(backend, w0)
    opt = Adam(params, **kwargs)
    _set_grads(backend, params, grads[0])
    opt.step()
    return opt


def test_load_state_dict_restores_lr_and_steps(backend: ap.Backend) -> None:
    old = _adam_after_one_step(backend, lr=0.01)
    old.lr = 0.0  # e.g. a cosine schedule at its end
    saved = old.state_dict()
    assert saved["hyperparameters"]["lr"] == 0.01 and saved["lr"] == 0.0
    w0, _ = _problem()
    # Rebuilt from the config (the constructor's lr), then restored.
    opt = optimizer_from_config(_params(backend, w0), saved["type"], saved["hyperparameters"])
    opt.load_state_dict(saved)
    assert (opt.initial_lr, opt.lr, opt.steps) == (0.01, 0.0, 1)
    # Loading into an optimizer built with another lr restores both rates as well.
    opt = Adam(_params(backend, w0), lr=0.5)
    opt.load_state_dict(saved)
    assert (opt.initial_lr, opt.lr) == (0.01, 0.0)
    assert opt.state[2]["exp_avg"].dtype == opt.params[2].data.dtype
    assert backend.owns(opt.state[2]["exp_avg"])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(type="sgd"), "expected a state dict of 'adam'"),
        (lambda d: d["state"].pop(), "state for 3 parameters, the optimizer has 4"),
        (lambda d: d["state"][1].update(exp_avg=np.zeros(4)), r"shape \(3,\), got \(4,\)"),
        (lambda d: d["hyperparameters"].update(betas=[0.5, 0.9]), "hyperparameters"),
        (lambda d: d["hyperparameters"].update(lr=float("nan")), r"hyperparameters\['lr'\]"),
        (lambda d: d.update(lr=-0.1), "lr must be a finite number >= 0, got -0.1"),
        (lambda d: d.update(steps=-1), "steps must be"),
        (lambda d: d.pop("state"), "not an optimizer state dict"),
    ],
)
def test_load_state_dict_rejects_mismatches(backend: ap.Backend, edit, match: str) -> None:
    saved = _adam_after_one_step(backend, lr=0.01).state_dict()
    edit(saved)
    w0, _ = _problem()
    opt = Adam(_params(backend, w0), lr=0.01)
    with pytest.raises(CheckpointError, match=match):
        opt.load_state_dict(saved)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("sgd", {"lr": 0.0}, r"^SGD: lr must be a finite number > 0, got 0\.0$"),
        ("sgd", {"lr": -1.0}, r"^SGD: lr must be a finite number > 0, got -1\.0$"),
        ("sgd", {"lr": "0.1"}, r"^SGD: lr must be a finite number > 0, got '0\.1'$"),
        ("sgd", {"lr": True}, r"^SGD: lr must be a finite number > 0, got True$"),
        ("sgd", {"momentum": -0.1}, r"^SGD: momentum must be a finite number >= 0, got -0\.1$"),
        ("sgd", {"nesterov": True}, "nesterov=True needs a positive momentum"),
        (
            "adam",
            {"betas": (1.0, 0.999)},
            r"^Adam: betas\[0\] must be a finite number in \[0, 1\), got 1\.0$",
        ),
        (
            "adam",
            {"betas": (0.9, -0.1)},
            r"^Adam: betas\[1\] must be a finite number in \[0, 1\), got -0\.1$",
        ),
        ("adam", {"betas": (0.9,)}, "betas must be a pair"),
        ("adam", {"eps": 0.0}, r"^Adam: eps must be a finite number > 0, got 0\.0$"),
        (
            "adamw",
            {"weight_decay": -1e-2},
            r"^AdamW: weight_decay must be a finite number >= 0, got -0\.01$",
        ),
        ("adamw", {"lr": float("inf")}, r"^AdamW: lr must be a finite number > 0, got inf$"),
        (
            "rmsprop",
            {"alpha": 1.5},
            r"^RMSProp: alpha must be a finite number in \[0, 1\), got 1\.5$",
        ),
        (
            "rmsprop",
            {"momentum": -1.0},
            r"^RMSProp: momentum must be a finite number >= 0, got -1\.0$",
        ),
        ("rmsprop", {"eps": -1e-8}, r"^RMSProp: eps must be a finite number > 0, got -1e-08$"),
        (
            "adagrad",
            {"lr_decay": -0.1},
            r"^Adagrad: lr_decay must be a finite number >= 0, got -0\.1$",
        ),
        (
            "adagrad",
            {"initial_accumulator_value": -1.0},
            r"^Adagrad: initial_accumulator_value must be a finite number >= 0, got -1\.0$",
        ),
        ("adagrad", {"eps": 0.0}, r"^Adagrad: eps must be a finite number > 0, got 0\.0$"),
    ],
)
def test_hyperparameter_validation(name: str, kwargs: dict, match: str) -> None:
    params = _params(ap.get_backend("numpy", dtype="float64"), [np.zeros(3)])
    with pytest.raises(ValueError, match=match):
        get_optimizer(name, params, **kwargs)


def test_registry_and_get_optimizer() -> None:
    params = _params(ap.get_backend("numpy", dtype="float64"), [np.zeros(3)])
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop", "adagrad"}
    for key, cls in OPTIMIZERS.items():
        assert cls.name == key
        assert type(get_optimizer(key.upper(), params)) is cls
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; valid: sgd, adam"):
        get_optimizer("lamb", params)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) beta1; valid: lr, betas"):
        get_optimizer("adam", params, beta1=0.9)
    assert get_optimizer("adamw", params).weight_decay == 1e-2


def test_float32_stays_float32(backend32: ap.Backend) -> None:
    """No silent promotion: parameters, state and clipped gradients keep float32."""
    w0, grads = _problem()
    for name, kwargs in CASES.values():
        params = _params(backend32, w0)
        opt = get_optimizer(name, params, **kwargs)
        for step_grads in grads[:3]:
            _set_grads(backend32, params, step_grads)
            total = clip_grad_norm(params, 1.0)
            opt.step()
        assert total.dtype == backend32.dtype
        for p, state in zip(params, opt.state, strict=True):
            assert p.data.dtype == backend32.dtype, name
            assert p.grad.dtype == backend32.dtype, name
            for key, value in state.items():
                if key != "step":
                    assert value.dtype == backend32.dtype, (name, key)


@pytest.mark.parametrize("case", ["sgd-nesterov", "adam-amsgrad", "rmsprop-full", "adagrad-full"])
def test_numpy_fast_path_matches_portable(case: str) -> None:
    be = ap.get_backend("numpy", dtype="float64")
    name, kwargs = CASES[case]
    w0, grads = _problem()
    results = []
    for portable in (False, True):
        params = _params(be, w0)
        opt = get_optimizer(name, params, **kwargs)
        with kernels.use_portable(portable):
            for step_grads in grads[:5]:
                _set_grads(be, params, step_grads)
                opt.step()
        results.append([p.data for p in params])
    for fast, portable in zip(*results, strict=True):
        np.testing.assert_array_equal(fast, portable)


def test_sgd_velocity_does_not_alias_gradient(backend: ap.Backend) -> None:
    params = _params(backend, [np.zeros(3)])
    opt = SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = backend.asarray(np.ones(3))
    opt.step()
    assert opt.state[0]["velocity"] is not params[0].grad


# -- clipping ------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(backend: ap.Backend, max_norm: float) -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(11)
    grads = [gen.standard_normal(s) for s in SHAPES]
    grads[1] = None  # a parameter without gradient is skipped

    tparams = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in SHAPES]
    for p, g in zip(tparams, grads, strict=True):
        p.grad = None if g is None else torch.tensor(g)
    want_norm = torch.nn.utils.clip_grad_norm_(tparams, max_norm)

    params = _params(backend, [np.zeros(s) for s in SHAPES])
    _set_grads(backend, params, grads)
    originals = [p.grad for p in params]
    total = clip_grad_norm(params, max_norm)

    assert backend.owns(total) and tuple(total.shape) == ()
    np.testing.assert_allclose(backend.to_host(total), want_norm.item(), rtol=1e-12)
    for p, tp, g, old in zip(params, tparams, grads, originals, strict=True):
        if g is None:
            assert p.grad is None
            continue
        np.testing.assert_allclose(backend.to_host(p.grad), tp.grad.numpy(), rtol=1e-12)
        # Functional: the array the caller held is unchanged.
        np.testing.assert_array_equal(backend.to_host(old), g)
    clipped = float(backend.to_host(global_grad_norm(params)))
    assert clipped == pytest.approx(min(max_norm, want_norm.item()), rel=1e-5)


def test_global_grad_norm_is_the_norm_of_the_concatenation(backend: ap.Backend) -> None:
    gen = np.random.default_rng(5)
    grads = [gen.standard_normal(s) for s in SHAPES]
    params = _params(backend, [np.zeros(s) for s in SHAPES])
    _set_grads(backend, params, grads)
    want = np.linalg.norm(np.concatenate([g.ravel() for g in grads]))
    np.testing.assert_allclose(backend.to_host(global_grad_norm(params)), want, rtol=1e-13)
    for p in params:
        p.grad = None
    assert float(backend.to_host(global_grad_norm(params))) == 0.0


def test_clip_grad_norm_validates_max_norm() -> None:
    params = _params(ap.get_backend("numpy", dtype="float64"), [np.zeros(3)])
    with pytest.raises(
        ValueError, match=r"^clip_grad_norm: max_norm must be a finite number > 0, got 0\.0$"
    ):
        clip_grad_norm(params, 0.0)
    with pytest.raises(ValueError, match="empty parameter list"):
        global_grad_norm([])
