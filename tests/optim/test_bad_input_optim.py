"""Bad hyperparameters of the optimizers, clip_grad_norm and the schedules: the rows of
the bad-input table for ``arrayprop.optim``, and the regression they found.

The harness (``Case``, ``check``) is tests/badinput.py.
"""

from __future__ import annotations

import re

import pytest

import arrayprop as ap
import badinput
from badinput import Case, ones, small_mlp

# -- the rows -----------------------------------------------------------------------------

CASES = [
    # optimizers
    *[
        Case(
            f"sgd-lr-{label}",
            lambda be, _, lr=lr: ap.SGD(small_mlp(be).parameters(), lr=lr),
            ValueError,
            rf"SGD: lr must be a {need}, got {re_value}",
        )
        for label, lr, need, re_value in [
            ("zero", 0.0, "finite number > 0", "0.0"),
            ("negative", -0.1, "finite number > 0", "-0.1"),
            ("nan", float("nan"), "finite number > 0", "nan"),
            ("inf", float("inf"), "finite number > 0", "inf"),
            ("string", "0.1x", "finite number > 0", "'0.1x'"),
        ]
    ],
    Case(
        "sgd-negative-momentum",
        lambda be, _: ap.SGD(small_mlp(be).parameters(), lr=0.1, momentum=-0.9),
        ValueError,
        r"SGD: momentum must be a finite number >= 0, got -0.9",
    ),
    Case(
        "sgd-negative-weight-decay",
        lambda be, _: ap.SGD(small_mlp(be).parameters(), lr=0.1, weight_decay=-1),
        ValueError,
        r"SGD: weight_decay must be a finite number >= 0, got -1$",
    ),
    Case(
        "sgd-nesterov-without-momentum",
        lambda be, _: ap.SGD(small_mlp(be).parameters(), lr=0.1, nesterov=True),
        ValueError,
        r"SGD: nesterov=True needs a positive momentum",
    ),
    Case(
        "sgd-no-parameters",
        lambda be, _: ap.SGD([], lr=0.1),
        ValueError,
        r"SGD: got an empty parameter list",
    ),
    Case(
        "sgd-not-parameters",
        lambda be, _: ap.SGD([ones(be)], lr=0.1),
        TypeError,
        r"SGD: expected Parameters, got",
    ),
    *[
        Case(
            f"{name}-lr-zero",
            lambda be, _, name=name: ap.get_optimizer(name, small_mlp(be).parameters(), lr=0.0),
            ValueError,
            rf"{cls}: lr must be a finite number > 0, got 0.0",
        )
        for name, cls in [
            ("adam", "Adam"),
            ("adamw", "AdamW"),
            ("rmsprop", "RMSProp"),
            ("adagrad", "Adagrad"),
        ]
    ],
    Case(
        "adam-betas-not-a-pair",
        lambda be, _: ap.Adam(small_mlp(be).parameters(), betas=0.9),
        ValueError,
        r"Adam: betas must be a pair \(beta1, beta2\), got 0.9",
    ),
    Case(
        "adam-beta-one",
        lambda be, _: ap.Adam(small_mlp(be).parameters(), betas=(1.0, 0.999)),
        ValueError,
        r"Adam: betas\[0\] must be a finite number in \[0, 1\), got 1.0",
    ),
    Case(
        "adam-zero-eps",
        lambda be, _: ap.Adam(small_mlp(be).parameters(), eps=0.0),
        ValueError,
        r"Adam: eps must be a finite number > 0, got 0.0",
    ),
    Case(
        "rmsprop-alpha-one",
        lambda be, _: ap.RMSProp(small_mlp(be).parameters(), alpha=1.0),
        ValueError,
        r"RMSProp: alpha must be a finite number in \[0, 1\), got 1.0",
    ),
    Case(
        "optimizer-unknown-name",
        lambda be, _: ap.get_optimizer("adamax", small_mlp(be).parameters()),
        ValueError,
        r"unknown optimizer 'adamax'; valid: sgd, adam, adamw, rmsprop, adagrad",
    ),
    Case(
        "optimizer-unknown-hyperparameter",
        lambda be, _: ap.get_optimizer("adam", small_mlp(be).parameters(), momentum=0.9),
        ValueError,
        r"Adam: unknown hyperparameter\(s\) momentum; valid: lr, betas",
    ),
    Case(
        "clip-negative-norm",
        lambda be, _: ap.clip_grad_norm(small_mlp(be).parameters(), -1.0),
        ValueError,
        r"clip_grad_norm: max_norm must be a finite number > 0, got -1.0",
    ),
    Case(
        "step-lr-zero-step",
        lambda be, _: ap.StepLR(ap.SGD(small_mlp(be).parameters()), step_size=0),
        ValueError,
        r"StepLR: step_size must be an int >= 1, got 0",
    ),
]


@badinput.backend_rows(CASES)
def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
    badinput.check(case, backend, tmp_path)


# -- regressions found by the table ------------------------------------------------------


@pytest.mark.parametrize("value", ["fast", None, [0.1]])
def test_a_non_numeric_learning_rate_is_named(backend, value):
    # float("fast") raised "could not convert string to float", naming neither SGD nor lr.
    model = ap.mlp([2, 1], seed=0, backend=backend)
    with pytest.raises(
        ValueError, match=r"SGD: lr must be a finite number > 0, got " + re.escape(repr(value))
    ):
        ap.SGD(model.parameters(), lr=value)
