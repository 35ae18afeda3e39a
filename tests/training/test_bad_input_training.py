"""Bad input to train_step, fit, evaluate and predict: the rows of the bad-input table
for ``arrayprop.training``, and the regression they found.

The harness (``Case``, ``check``) is tests/badinput.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
import badinput
from arrayprop.errors import (
    BackendMismatchError,
    CheckpointError,
    DataError,
    DTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
)
from badinput import DENSE_INPUT, Case, foreign, needs_host_check, ones, other_device, small_mlp

# -- builders of bad arguments ------------------------------------------------------------


def _step(be, x, y, loss=None, host_check=False):
    if host_check:
        needs_host_check(be)
    model = small_mlp(be)
    return ap.train_step(model, loss or ap.SoftmaxCrossEntropy(), ap.SGD(model.parameters()), x, y)


def _fit(be, x=None, y=None, *, model=None, **kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3)) if x is None else x
    y = np.arange(20) % 2 if y is None else y
    args = dict(loss="softmax-ce", optimizer="sgd", epochs=1, progress=None)
    return ap.fit(model or small_mlp(be), x, y, **{**args, **kw})


def _with_nan(shape=(20, 3), at=(0, 0)):
    x = np.random.default_rng(0).standard_normal(shape)
    x[at] = np.nan
    return x


def _fit_resume_other_model(be, tmp):
    path = tmp / "run.npz"
    _fit(be, checkpoint=path)
    return _fit(be, model=small_mlp(be, (3, 5, 2)), checkpoint=path, resume=True, epochs=2)


#: Softmax cross-entropy target rows that are no probability distributions (issue 14).
BAD_ROWS = {
    "negative": lambda y: y - 0.5 * np.roll(y, 1, axis=1),  # sums to 0.5, one entry < 0
    "sign-flipped": lambda y: -y,
    "negative-summing-to-1": lambda y: 2 * y - np.roll(y, 1, axis=1),
    "doubled": lambda y: 2 * y,
    "halved": lambda y: 0.5 * y,
    "all-zero": lambda y: 0 * y,
    "one-zero-row": lambda y: np.concatenate([y[:-1], 0 * y[-1:]]),
}


def _rows(be, bad, where="host"):
    """One-hot rows (20, 2) spoiled by ``BAD_ROWS[bad]``, on the host or the device."""
    y = BAD_ROWS[bad](np.eye(2)[np.arange(20) % 2])
    return be.asarray(y) if where == "device" else y


def _complex(be, shape, where):
    a = np.random.default_rng(0).standard_normal(shape) + 1j
    return be.xp.asarray(a, device=be.device) if where == "device" else a


def _one_output(be, entry, y):
    model = small_mlp(be, (3, 4, 1))
    x = np.random.default_rng(0).standard_normal((20, 3))
    if entry == "evaluate":
        return ap.evaluate(model, x, y, loss="softmax-ce")
    return _fit(be, x, y, model=model)


_FIT_ENTRIES = {
    "fit": lambda be, x=None, y=None: _fit(be, x, y),
    "fit-streamed": lambda be, x=None, y=None: _fit(be, x, y, max_device_bytes=256),
    "evaluate": lambda be, x=None, y=None: ap.evaluate(
        small_mlp(be), *_xy(x, y), loss="softmax-ce"
    ),
    "validation-data": lambda be, x=None, y=None: _fit(be, validation_data=_xy(x, y)),
}


def _xy(x, y):
    x = np.random.default_rng(0).standard_normal((20, 3)) if x is None else x
    return x, np.arange(20) % 2 if y is None else y


CASES = [
    # softmax cross-entropy targets that are no distributions: every entry point, host and device
    *(
        Case(
            f"{entry}-target-rows-{bad}-{where}",
            lambda be, _, entry=entry, bad=bad, where=where: _FIT_ENTRIES[entry](
                be, y=_rows(be, bad, where)
            ),
            LabelError,
            r"y: target row \d+ (has a negative entry|sums to).*probabilities",
        )
        for entry in _FIT_ENTRIES
        for bad in BAD_ROWS
        for where in ("host", "device")
    ),
    *(
        Case(
            f"train-step-target-rows-{bad}",
            lambda be, _, bad=bad: _step(be, ones(be), _rows(be, bad)[-5:], host_check=True),
            LabelError,
            r"SoftmaxCrossEntropy\(\): target row \d+ (has a negative entry|sums to)",
        )
        for bad in BAD_ROWS
    ),
    # softmax cross-entropy on one output: the loss is 0 whatever the model does
    *(
        Case(
            f"{entry}-softmax-ce-one-output-{kind}",
            lambda be, _, entry=entry, kind=kind: _one_output(
                be, entry, np.zeros(20, dtype=int) if kind == "labels" else np.ones((20, 1))
            ),
            ShapeError,
            r"SoftmaxCrossEntropy\(\): the model has 1 output.*>= 2 classes",
        )
        for entry in ("fit", "evaluate")
        for kind in ("labels", "rows")
    ),
    Case(
        "loss-softmax-ce-one-output",
        lambda be, _: ap.SoftmaxCrossEntropy()(ones(be, (4, 1)), np.ones((4, 1))),
        ShapeError,
        r"SoftmaxCrossEntropy\(\): the model has 1 output",
    ),
    # complex data: a cast would train on the real part
    *(
        Case(
            f"{entry}-complex-{name}-{where}",
            lambda be, _, entry=entry, name=name, where=where: _FIT_ENTRIES[entry](
                be, **{name: _complex(be, (20, 3) if name == "x" else (20,), where)}
            ),
            DTypeError,
            rf"{name}: got complex data",
        )
        for entry in _FIT_ENTRIES
        for name in ("x", "y")
        for where in ("host", "device")
    ),
    *(
        Case(
            f"predict-complex-x-{where}{'-streamed' if budget else ''}",
            lambda be, _, where=where, budget=budget: ap.predict(
                small_mlp(be), _complex(be, (20, 3), where), max_device_bytes=budget
            ),
            DTypeError,
            r"predict: x: got complex data",
        )
        for where in ("host", "device")
        for budget in (None, 256)
    ),
    Case(
        "train-step-complex-x-device",
        lambda be, _: _step(be, _complex(be, (5, 3), "device"), np.arange(5) % 2),
        DTypeError,
        r"cannot use data of dtype .*complex128",
    ),
    Case(
        "loss-complex-target-device",
        lambda be, _: ap.MSE()(ones(be, (5, 2)), _complex(be, (5, 2), "device")),
        DTypeError,
        r"cannot use data of dtype .*complex128",
    ),
    # train_step
    Case(
        "train-step-wrong-width",
        lambda be, _: _step(be, np.ones((5, 4)), np.zeros(5, dtype=np.int64)),
        ShapeError,
        DENSE_INPUT + r", got \(5, 4\)",
    ),
    Case(
        "train-step-int-data",
        lambda be, _: _step(be, ones(be, (5, 3), np.int64), np.zeros(5, dtype=np.int64)),
        DTypeError,
        r"expected input of dtype float64, got .*int64",
    ),
    Case(
        "train-step-label-out-of-range",
        lambda be, _: _step(be, np.ones((4, 3)), np.array([0, 1, 7, 1]), host_check=True),
        LabelError,
        r"SoftmaxCrossEntropy\(\): label 7 at index 2 is out of range for a model with 2 outputs",
    ),
    Case(
        "train-step-label-count",
        lambda be, _: _step(be, np.ones((4, 3)), np.array([0, 1, 1])),
        ShapeError,
        r"3 labels for 4 logits rows",
    ),
    Case(
        "train-step-target-shape",
        lambda be, _: _step(be, np.ones((4, 3)), np.zeros((4, 3)), loss=ap.MSE()),
        ShapeError,
        r"MSE\(\): target shape \(4, 3\) does not match prediction shape \(4, 2\)",
    ),
    Case(
        "train-step-empty-batch",
        lambda be, _: _step(be, np.ones((0, 3)), np.zeros(0, dtype=np.int64)),
        DataError,
        r"empty batch",
    ),
    Case(
        "train-step-foreign-data",
        lambda be, _: _step(be, foreign(be, (4, 3)), np.zeros(4, dtype=np.int64)),
        BackendMismatchError,
        r"convert it explicitly|expected an array",
    ),
    # fit / evaluate / predict
    Case(
        "fit-zero-blas-threads",
        lambda be, _: _fit(be, blas_threads=0),
        ValueError,
        r"fit: blas_threads must be 'auto', None or an int >= 1, got 0",
    ),
    Case(
        "fit-wrong-width",
        lambda be, _: _fit(be, np.ones((20, 4))),
        ShapeError,
        r"fit: x has 4 features per sample but the model's first layer Dense\(3, 4\) expects 3"
        r"; expected x of shape \(n, 3\), got \(20, 4\)",
    ),
    Case(
        "fit-1d-data",
        lambda be, _: _fit(be, np.ones(20)),
        ShapeError,
        r"fit: x must have shape \(n, 3\), got \(20,\)",
    ),
    Case(
        "fit-nan-in-x",
        lambda be, _: _fit(be, _with_nan(at=(7, 2))),
        NonFiniteError,
        r"fit: x contains nan at index \(7, 2\)",
    ),
    Case(
        "fit-inf-in-targets",
        lambda be, _: _fit(be, y=np.where(np.eye(20, 2) > 0, np.inf, 0.5), loss="mse"),
        NonFiniteError,
        r"fit: y contains inf at index \(0, 0\)",
    ),
    Case(
        "fit-nan-in-device-x",
        lambda be, _: _fit(be, be.asarray(_with_nan(at=(3, 1)))),
        NonFiniteError,
        r"fit: x contains nan at index \(3, 1\)",
    ),
    Case(
        "fit-nan-in-validation",
        lambda be, _: _fit(be, validation_data=(_with_nan((5, 3)), np.zeros(5, dtype=int))),
        NonFiniteError,
        r"validation_data: x contains nan",
    ),
    Case(
        "fit-label-too-large",
        lambda be, _: _fit(be, y=np.arange(20) % 3),
        LabelError,
        r"fit: y: label 2 at index 2 is out of range for a model with 2 outputs \(valid: 0..1\)",
    ),
    Case(
        "fit-negative-label",
        lambda be, _: _fit(be, y=np.arange(20) % 2 - 1),
        LabelError,
        r"fit: y: label -1 at index 0 is out of range",
    ),
    Case(
        "fit-float-labels",
        lambda be, _: _fit(be, y=(np.arange(20) % 2).astype(float)),
        LabelError,
        r"class labels of shape \(20,\) must be integers 0..1, got .*float64",
    ),
    Case(
        "fit-device-labels-out-of-range",
        lambda be, _: _fit(be, be.asarray(np.ones((20, 3))), be.asarray(np.arange(20) % 4)),
        LabelError,
        r"label (2|3) at index (2|3) is out of range",
    ),
    Case(
        "fit-label-count",
        lambda be, _: _fit(be, y=np.arange(10) % 2),
        ShapeError,
        r"fit: x has 20 samples but y has shape \(10,\)",
    ),
    Case(
        "fit-target-columns",
        lambda be, _: _fit(be, y=np.zeros((20, 3)), loss="mse"),
        ShapeError,
        r"y must have shape \(20,\) \(labels\) or \(20, 2\) .*got \(20, 3\)",
    ),
    Case(
        "fit-labels-for-mse",
        lambda be, _: _fit(be, loss="mse"),
        ShapeError,
        r"y has shape \(20,\) \(class labels\) but MSE\(\) needs targets of shape \(20, 2\)",
    ),
    Case(
        "fit-bce-targets-outside-0-1",
        lambda be, _: (
            needs_host_check(be),
            _fit(be, model=small_mlp(be, (3, 1)), y=np.full((20, 1), 2.0), loss="bce"),
        ),
        LabelError,
        r"target 2.0 is outside \[0, 1\]",
    ),
    Case(
        "fit-empty-data",
        lambda be, _: _fit(be, np.ones((0, 3)), np.zeros(0, dtype=int)),
        DataError,
        r"fit: x is empty \(0 samples\)",
    ),
    Case(
        "fit-string-data",
        lambda be, _: _fit(be, np.full((20, 3), "x")),
        DTypeError,
        r"cannot use data of dtype <U1 \(need numbers\)",
    ),
    Case(
        "fit-foreign-library",
        lambda be, _: _fit(be, foreign(be, (20, 3))),
        BackendMismatchError,
        r"fit: x: got a .* which is neither host \(NumPy\) data nor an array of the model's",
    ),
    Case(
        "fit-other-device",
        lambda be, _: _fit(be, other_device(be, (20, 3))),
        BackendMismatchError,
        r"fit: x: got a .*move it explicitly",
    ),
    *[
        Case(
            f"fit-{arg.replace('_', '-')}-{label}",
            lambda be, _, arg=arg, value=value: _fit(be, **{arg: value}),
            ValueError,
            rf"fit: {arg} must be an int >= 1, got {value!r}",
        )
        for arg, label, value in [
            ("epochs", "zero", 0),
            ("epochs", "negative", -3),
            ("epochs", "float", 2.5),
            ("batch_size", "zero", 0),
            ("batch_size", "negative", -8),
            ("checkpoint_every", "zero", 0),
            ("max_device_bytes", "zero", 0),
        ]
    ],
    Case(
        "fit-unknown-loss",
        lambda be, _: _fit(be, loss="hinge"),
        ValueError,
        r"unknown loss 'hinge'; valid: softmax-ce",
    ),
    Case(
        "fit-unknown-optimizer",
        lambda be, _: _fit(be, optimizer="lion"),
        ValueError,
        r"unknown optimizer 'lion'; valid: sgd, adam",
    ),
    Case(
        "fit-unknown-metric",
        lambda be, _: _fit(be, metrics=["f1"]),
        ValueError,
        r"unknown metric 'f1'; valid: accuracy",
    ),
    Case(
        "fit-optimizer-of-another-model",
        lambda be, _: _fit(be, optimizer=ap.SGD(small_mlp(be).parameters())),
        ValueError,
        r"does not update the model's parameters 0.weight, 0.bias, 2.weight, 2.bias",
    ),
    Case(
        "fit-optimizer-not-an-optimizer",
        lambda be, _: _fit(be, optimizer=0.1),
        TypeError,
        r"optimizer must be an Optimizer or a name, got float",
    ),
    Case(
        "fit-validation-wrong-width",
        lambda be, _: _fit(be, validation_data=(np.ones((5, 4)), np.zeros(5, dtype=int))),
        ShapeError,
        r"validation_data: x has 4 features per sample",
    ),
    Case(
        "fit-validation-not-a-pair",
        lambda be, _: _fit(be, validation_data=np.ones((5, 3))),
        ValueError,
        r"validation_data must be a pair \(x_val, y_val\)",
    ),
    Case(
        "fit-resume-without-checkpoint",
        lambda be, _: _fit(be, resume=True),
        ValueError,
        r"fit: resume=True needs a checkpoint path",
    ),
    Case(
        "fit-resume-other-architecture",
        lambda be, tmp: _fit_resume_other_model(be, tmp),
        CheckpointError,
        r"run.npz: its model has parameter shapes \[\(3, 4\), .* this one \[\(3, 5\)",
    ),
    Case(
        "fit-unknown-progress",
        lambda be, _: _fit(be, progress="fancy"),
        ValueError,
        r"fit: progress must be one of True, False, None, 'bar', 'lines', got 'fancy'",
    ),
    Case(
        "fit-distributed-not-a-bool",
        lambda be, _: _fit(be, distributed="yes"),
        ValueError,
        r"fit: distributed must be one of True, False, got 'yes'",
    ),
    Case(
        "evaluate-distributed-not-a-bool",
        lambda be, _: ap.evaluate(
            small_mlp(be), np.ones((4, 3)), np.zeros(4, int), distributed=1.5
        ),
        ValueError,
        r"evaluate: distributed must be one of True, False, got 1.5",
    ),
    Case(
        "fit-callback-not-a-callback",
        lambda be, _: _fit(be, callbacks=[print]),
        TypeError,
        r"callbacks: <built-in function print> is not an arrayprop Callback",
    ),
    Case(
        "fit-model-without-parameters",
        lambda be, _: _fit(be, model=ap.Sequential(ap.ReLU())),
        ValueError,
        r"fit: the model has no parameters",
    ),
    Case(
        "evaluate-wrong-width",
        lambda be, _: ap.evaluate(small_mlp(be), np.ones((5, 4)), np.zeros(5, dtype=int)),
        ShapeError,
        r"evaluate: x has 4 features per sample",
    ),
    Case(
        "evaluate-empty-data",
        lambda be, _: ap.evaluate(small_mlp(be), np.ones((0, 3)), np.zeros(0, dtype=int)),
        DataError,
        r"evaluate: x is empty \(0 samples\)",
    ),
    Case(
        "evaluate-label-out-of-range",
        lambda be, _: ap.evaluate(small_mlp(be), np.ones((4, 3)), np.array([0, 1, 9, 1])),
        LabelError,
        r"evaluate: y: label 9 at index 2 is out of range",
    ),
    Case(
        "evaluate-nan",
        lambda be, _: ap.evaluate(small_mlp(be), _with_nan((4, 3), (1, 1)), np.zeros(4, dtype=int)),
        NonFiniteError,
        r"evaluate: x contains nan at index \(1, 1\)",
    ),
    Case(
        "evaluate-zero-batch-size",
        lambda be, _: ap.evaluate(
            small_mlp(be), np.ones((4, 3)), np.zeros(4, dtype=int), batch_size=0
        ),
        ValueError,
        r"evaluate: batch_size must be an int >= 1, got 0",
    ),
    Case(
        "predict-function-wrong-width",
        lambda be, _: ap.predict(small_mlp(be), np.ones((5, 4))),
        ShapeError,
        r"predict: x has 4 features per sample",
    ),
    Case(
        "predict-function-empty-data",
        lambda be, _: ap.predict(small_mlp(be), np.ones((0, 3))),
        DataError,
        r"predict: x is empty \(0 samples\)",
    ),
    Case(
        "predict-function-zero-batch-size",
        lambda be, _: ap.predict(small_mlp(be), np.ones((5, 3)), batch_size=0),
        ValueError,
        r"predict: batch_size must be an int >= 1, got 0",
    ),
    Case(
        "predict-function-foreign-library",
        lambda be, _: ap.predict(small_mlp(be), foreign(be)),
        BackendMismatchError,
        r"predict: x: got a .*move it explicitly",
    ),
]


@badinput.backend_rows(CASES)
def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
    badinput.check(case, backend, tmp_path)


# -- regressions found by the table ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.uint8])
def test_predict_function_converts_host_data_like_fit_on_every_backend(backend, dtype):
    # On NumPy, host data counts as "on the device" and skipped the conversion fit and evaluate
    # do: ap.predict raised DTypeError there for data every other backend accepted.
    model = ap.mlp([3, 4, 2], seed=0, backend=backend)
    x = (np.arange(15).reshape(5, 3) % 4).astype(dtype)
    out = ap.predict(model, x)
    assert out.dtype == backend.dtype
    expected = backend.to_host(model.predict(x.astype(np.float64)))
    np.testing.assert_allclose(backend.to_host(out), expected, rtol=1e-12)
