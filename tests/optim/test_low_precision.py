"""Optimizers on float16 / bfloat16 parameters: update arithmetic and state in float32.

In float16, ε = 1e-8 is 0 and g² underflows for |g| < 2.4e-4, so an adaptive optimizer
computing in the parameter's dtype divides 0 by 0 on its first steps and every float16 run
diverged (issue 14, item 5). Each optimizer must instead update a low-precision parameter as
the same update in float32, rounded once to the parameter's dtype, and keep its state float32.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import DTypeError
from arrayprop.optim.registry import OPTIMIZERS

LOW = ("float16", "bfloat16")
#: Every optimizer, with its non-default options that keep extra state.
SETTINGS = [
    *((name, {}) for name in OPTIMIZERS),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("adam", {"amsgrad": True, "weight_decay": 1e-2}),
    ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("adagrad", {"lr_decay": 0.1, "initial_accumulator_value": 0.1}),
]


def _low(backend, dtype):
    try:
        return backend.with_dtype(dtype)
    except DTypeError:
        pytest.skip(f"{backend.name} has no {dtype}")


def _ids(setting):
    name, kw = setting
    return name + "".join(f"-{k}" for k in kw)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("setting", SETTINGS, ids=_ids)
def test_a_low_precision_step_is_the_float32_step_rounded_once(backend, dtype, setting):
    name, kw = setting
    low = _low(backend, dtype)
    wide = backend.with_dtype("float32")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    # Gradients of the size float16 loses in g² (|g| < 2.4e-4) and ordinary ones.
    grads = [rng.standard_normal((4, 3)) * scale for scale in (1e-4, 1e-5, 1.0, 1e-3)]
    p_low = ap.Parameter(low.asarray(w0, dtype=low.dtype))
    # The float32 twin starts from the very values the low-precision parameter holds.
    p_ref = ap.Parameter(wide.asarray(low.to_host(p_low.data), dtype=wide.dtype))
    opt_low = OPTIMIZERS[name]([p_low], **kw)
    opt_ref = OPTIMIZERS[name]([p_ref], **kw)
    for g in grads:
        p_low.grad = low.asarray(g, dtype=low.dtype)
        p_ref.grad = wide.asarray(low.to_host(p_low.grad), dtype=wide.dtype)
        # The reference steps from the rounded weight, as the low-precision one does.
        p_ref.data = wide.asarray(low.to_host(p_low.data), dtype=wide.dtype)
        opt_low.step()
        opt_ref.step()
        expected = low.to_host(low.asarray(wide.to_host(p_ref.data), dtype=low.dtype))
        got = low.to_host(p_low.data)
        assert np.all(np.isfinite(got)), f"{name}: non-finite weights {got}"
        np.testing.assert_array_equal(got, expected)
        assert p_low.data.dtype == low.dtype
    for key, value in opt_low.state[0].items():
        if not isinstance(value, int):
            assert ap.backends.base.dtype_name_of(value.dtype) == "float32", key


def _fit(be, name, x, y):
    model = ap.mlp([2, 16, 2], activation="tanh", seed=0, backend=be)
    opt = ap.get_optimizer(name, model.parameters(), lr={"sgd": 0.1}.get(name, 1e-2))
    history = ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=8, batch_size=16,
                     seed=0, progress=None)  # fmt: skip
    return model, history


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_trains_a_low_precision_model_as_far_as_float32_does(backend, dtype, name):
    low = _low(backend, dtype)
    x, y = ap.data.make_xor(n=160, noise=0.1, seed=0)
    model, history = _fit(low, name, x, y)
    _, reference = _fit(backend.with_dtype("float32"), name, x, y)
    assert all(np.isfinite(history.loss)), history.loss
    # Within rounding of the float32 run: the low precision costs accuracy, not progress.
    assert history.loss[-1] < history.loss[0], history.loss
    assert abs(history.loss[-1] - reference.loss[-1]) < 0.05, (history.loss, reference.loss)
    assert all(p.data.dtype == low.dtype for p in model.parameters())


def test_a_low_precision_optimizer_state_round_trips_as_float32(backend):
    low = _low(backend, "float16")
    p = ap.Parameter(low.asarray(np.ones((2, 2)), dtype=low.dtype))
    opt = ap.Adam([p])
    p.grad = low.asarray(np.full((2, 2), 1e-4), dtype=low.dtype)
    opt.step()
    saved = opt.state_dict()
    assert saved["state"][0]["exp_avg_sq"].dtype == np.float32
    again = ap.Adam([p])
    again.load_state_dict(saved)
    np.testing.assert_array_equal(
        low.to_host(again.state[0]["exp_avg_sq"]), saved["state"][0]["exp_avg_sq"]
    )
    assert ap.backends.base.dtype_name_of(again.state[0]["exp_avg_sq"].dtype) == "float32"
