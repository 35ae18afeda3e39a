"""Bad input to the layers, Sequential, mlp, the losses and gradcheck: the rows of the
bad-input table for ``arrayprop.nn``, and the regressions those rows found.

The harness (``Case``, ``check``) is tests/badinput.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
import badinput
from arrayprop.errors import (
    BackendMismatchError,
    DataError,
    DTypeError,
    LabelError,
    ShapeError,
)
from badinput import DENSE_INPUT, Case, foreign, needs_host_check, ones, other_device, small_mlp

# -- builders of bad arguments ------------------------------------------------------------

ALL_LOSSES = [
    ap.MSE(),
    ap.RMSE(),
    ap.L2Loss(),
    ap.L2Loss(reduction="mean"),
    ap.BinaryCrossEntropy(),
    ap.BinaryCrossEntropy(from_logits=True),
    ap.SoftmaxCrossEntropy(),
]


def _after_forward(layer, be, x_shape=(5, 3)):
    layer.forward(ones(be, x_shape))
    return layer


def _dense_backend_pair(be):
    return ap.Sequential(
        ap.Dense(3, 4, backend=be), ap.Dense(4, 2, backend=be.with_dtype("float32"))
    )


def _labels(be, values, k=2, loss=None):
    needs_host_check(be)
    loss = loss or ap.SoftmaxCrossEntropy()
    return loss.value_and_grad(ones(be, (len(values), k)), np.asarray(values))


LOSS_CASES = [
    ("mse", ap.MSE),
    ("rmse", ap.RMSE),
    ("l2", ap.L2Loss),
    ("bce", ap.BinaryCrossEntropy),
    ("bce_logits", lambda: ap.BinaryCrossEntropy(from_logits=True)),
    ("softmax_ce", ap.SoftmaxCrossEntropy),
]


K = 2  # classes / outputs of the loss cases


def _loss_cases():
    cases = []
    for name, make in LOSS_CASES:

        def target_like(shape, make=make):
            if make is ap.SoftmaxCrossEntropy:
                return np.zeros(shape)
            return np.full(shape, 0.5)

        cases += [
            Case(
                f"{name}-target-shape",
                lambda be, _, make=make, t=target_like: make()(ones(be, (5, K)), t((5, K + 1))),
                ShapeError,
                r"target shape \(5, 3\) does not match .*\(5, 2\)",
            ),
            Case(
                f"{name}-target-rows",
                lambda be, _, make=make, t=target_like: make()(ones(be, (5, K)), t((4, K))),
                ShapeError,
                r"target shape \(4, 2\) does not match .*\(5, 2\)",
            ),
            Case(
                f"{name}-int-predictions",
                lambda be, _, make=make: make()(ones(be, (5, K), np.int64), np.zeros((5, K))),
                DTypeError,
                r"predictions must be floating point, got .*int64",
            ),
            Case(
                f"{name}-bool-predictions",
                lambda be, _, make=make: make()(ones(be, (5, K), bool), np.zeros((5, K))),
                DTypeError,
                r"predictions must be floating point, got .*bool",
            ),
            Case(
                f"{name}-foreign-target",
                lambda be, _, make=make: make()(ones(be, (5, K)), foreign(be, (5, K))),
                BackendMismatchError,
                r"convert it explicitly|expected an array of",
            ),
            Case(
                f"{name}-other-device-target",
                lambda be, _, make=make: make()(ones(be, (5, K)), other_device(be, (5, K))),
                BackendMismatchError,
                r"device|convert it explicitly",
            ),
            Case(
                f"{name}-empty-batch",
                lambda be, _, make=make: make()(ones(be, (0, K)), np.zeros((0, K))),
                DataError,
                r"empty batch",
            ),
            Case(
                f"{name}-string-target",
                lambda be, _, make=make: make()(ones(be, (2, K)), np.array([["a", "b"]] * 2)),
                DTypeError,
                r"dtype <U1 \(need numbers\)",
            ),
            Case(
                f"{name}-backward-before-call",
                lambda be, _, make=make: make().backward(),
                RuntimeError,
                r"backward called before the loss was evaluated",
            ),
        ]
    return cases


# -- the rows -----------------------------------------------------------------------------

CASES = [
    # BatchNorm1d, BatchNorm2d, LayerNorm
    Case(
        "batchnorm1d-wrong-channels",
        lambda be, _: ap.BatchNorm1d(3, backend=be).forward(ones(be, (5, 4))),
        ShapeError,
        r"BatchNorm1d\(3\): expected input of shape \(N, 3\) or \(N, 3, L\), got \(5, 4\)",
    ),
    Case(
        "batchnorm2d-wrong-rank",
        lambda be, _: ap.BatchNorm2d(3, backend=be).forward(ones(be, (5, 3))),
        ShapeError,
        r"BatchNorm2d\(3\): expected input of shape \(N, 3, H, W\), got \(5, 3\)",
    ),
    Case(
        "batchnorm1d-batch-of-1-in-training",
        lambda be, _: ap.BatchNorm1d(3, backend=be).forward(ones(be, (1, 3))),
        ShapeError,
        r"BatchNorm1d\(3\): expected more than 1 value per channel in training mode, got "
        r"input of shape \(1, 3\)",
    ),
    Case(
        "batchnorm1d-int-input",
        lambda be, _: ap.BatchNorm1d(3, backend=be).forward(ones(be, (5, 3), np.int64)),
        DTypeError,
        r"BatchNorm1d\(3\): expected input of dtype float64, got .*int64",
    ),
    Case(
        "batchnorm1d-foreign-library",
        lambda be, _: ap.BatchNorm1d(3, backend=be).forward(foreign(be)),
        BackendMismatchError,
        r"BatchNorm1d\(3\) input: expected an array of Backend",
    ),
    Case(
        "batchnorm1d-backward-foreign-gradient",
        lambda be, _: _after_forward(ap.BatchNorm1d(3, backend=be), be).backward(foreign(be)),
        BackendMismatchError,
        r"BatchNorm1d\(3\) gradient: expected an array",
    ),
    Case(
        "layernorm-wrong-trailing-shape",
        lambda be, _: ap.LayerNorm((2, 3), backend=be).forward(ones(be, (4, 3, 2))),
        ShapeError,
        r"LayerNorm\(\(2, 3\)\): expected input of shape \(batch, \.\.\., 2, 3\), got \(4, 3, 2\)",
    ),
    # Dense
    Case(
        "dense-wrong-width",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(ones(be, (5, 7))),
        ShapeError,
        DENSE_INPUT + r", got \(5, 7\)",
    ),
    Case(
        "dense-1d-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(ones(be, (3,))),
        ShapeError,
        DENSE_INPUT + r", got \(3,\)",
    ),
    Case(
        "dense-3d-input-wrong-width",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(ones(be, (2, 5, 4))),
        ShapeError,
        DENSE_INPUT + r", got \(2, 5, 4\)",
    ),
    Case(
        "dense-int-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(ones(be, (5, 3), np.int64)),
        DTypeError,
        r"Dense\(3, 4\): expected input of dtype float64, got .*int64",
    ),
    Case(
        "dense-uint8-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(ones(be, (5, 3), np.uint8)),
        DTypeError,
        r"expected input of dtype float64, got .*uint8",
    ),
    Case(
        "dense-bool-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(ones(be, (5, 3), bool)),
        DTypeError,
        r"expected input of dtype float64, got .*bool",
    ),
    Case(
        "dense-float32-into-float64",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(
            be.with_dtype("float32").asarray(np.ones((5, 3)))
        ),
        DTypeError,
        r"expected input of dtype float64, got .*float32",
    ),
    Case(
        "dense-list-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward([[1.0, 2.0, 3.0]]),
        BackendMismatchError,
        r"Dense\(3, 4\) input: expected an array of Backend.*got builtins.list",
    ),
    Case(
        "dense-foreign-library",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(foreign(be)),
        BackendMismatchError,
        r"Dense\(3, 4\) input: expected an array of Backend",
    ),
    Case(
        "dense-other-device",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(other_device(be)),
        BackendMismatchError,
        r"Dense\(3, 4\) input: expected an array",
    ),
    Case(
        "dense-backward-before-forward",
        lambda be, _: ap.Dense(3, 4, backend=be).backward(ones(be, (5, 4))),
        RuntimeError,
        r"Dense\(3, 4\): backward called before forward",
    ),
    Case(
        "dense-backward-wrong-width",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(ones(be, (5, 3))),
        ShapeError,
        r"Dense\(3, 4\): expected gradient of shape \(\.\.\., 4\), got \(5, 3\)",
    ),
    Case(
        "dense-backward-wrong-rows",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(ones(be, (6, 4))),
        ShapeError,
        r"Dense\(3, 4\): gradient has 6 rows but the input had 5",
    ),
    Case(
        "dense-backward-int-gradient",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(
            ones(be, (5, 4), np.int64)
        ),
        DTypeError,
        r"Dense\(3, 4\): expected a gradient of dtype .*float64, got .*int64",
    ),
    Case(
        "dense-backward-foreign-gradient",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(foreign(be, (5, 4))),
        BackendMismatchError,
        r"Dense\(3, 4\) gradient: expected an array",
    ),
    Case(
        "dense-weight-shape",
        lambda be, _: ap.Dense(3, 2, weight=np.ones((2, 3)), backend=be),
        ShapeError,
        r"Dense\(3, 2\): weight must have shape \(3, 2\), got \(2, 3\)",
    ),
    Case(
        "dense-bias-shape",
        lambda be, _: ap.Dense(3, 2, bias=np.ones(3), backend=be),
        ShapeError,
        r"Dense\(3, 2\): bias must have shape \(2,\), got \(3,\)",
    ),
    Case(
        "dense-zero-width",
        lambda be, _: ap.Dense(0, 2, backend=be),
        ValueError,
        r"Dense: in_features must be an int >= 1, got 0",
    ),
    Case(
        "dense-negative-width",
        lambda be, _: ap.Dense(3, -2, backend=be),
        ValueError,
        r"Dense: out_features must be an int >= 1, got -2",
    ),
    Case(
        "dense-float-width",
        lambda be, _: ap.Dense(3.0, 2, backend=be),
        ValueError,
        r"Dense: in_features must be an int >= 1, got 3.0",
    ),
    Case(
        "dense-unknown-initializer",
        lambda be, _: ap.Dense(3, 2, init="bogus", backend=be),
        ValueError,
        r"unknown initializer 'bogus'; valid: .*glorot.*he",
    ),
    # activations, Sequential, mlp
    Case(
        "relu-1d-input",
        lambda be, _: ap.ReLU().forward(ones(be, (3,))),
        ShapeError,
        r"ReLU\(\): expected input of shape \(batch, \.\.\.\), got \(3,\)",
    ),
    Case(
        "tanh-backward-before-forward",
        lambda be, _: ap.Tanh().backward(ones(be, (2, 3))),
        RuntimeError,
        r"Tanh\(\): backward called before forward",
    ),
    Case(
        "sigmoid-backward-wrong-shape",
        lambda be, _: _after_forward(ap.Sigmoid(), be).backward(ones(be, (5, 4))),
        ShapeError,
        r"Sigmoid\(\): gradient of shape \(5, 4\) does not match the output shape \(5, 3\)",
    ),
    Case(
        "softmax-backward-wrong-shape",
        lambda be, _: _after_forward(ap.Softmax(), be).backward(ones(be, (5, 2))),
        ShapeError,
        r"Softmax\(\): gradient of shape \(5, 2\) does not match the output shape \(5, 3\)",
    ),
    Case(
        "tanh-backward-int-gradient",
        lambda be, _: _after_forward(ap.Tanh(), be).backward(ones(be, (5, 3), np.int64)),
        DTypeError,
        r"Tanh\(\): expected a gradient of dtype",
    ),
    Case(
        "leaky-relu-alpha",
        lambda be, _: ap.LeakyReLU(alpha=2.0),
        ValueError,
        r"LeakyReLU: alpha must be a finite number in \(0, 1\), got 2.0",
    ),
    Case(
        "sequential-forward-wrong-width",
        lambda be, _: small_mlp(be).forward(ones(be, (5, 4))),
        ShapeError,
        DENSE_INPUT + r", got \(5, 4\)",
    ),
    Case(
        "sequential-backward-wrong-shape",
        lambda be, _: _after_forward(small_mlp(be), be).backward(ones(be, (5, 3))),
        ShapeError,
        r"Dense\(4, 2\): expected gradient of shape \(\.\.\., 2\), got \(5, 3\)",
    ),
    Case(
        "sequential-mixed-backends",
        lambda be, _: _dense_backend_pair(be),
        BackendMismatchError,
        r"Sequential: layers live on different backends: .*float64.*float32",
    ),
    Case(
        "sequential-not-a-layer",
        lambda be, _: ap.Sequential(ap.Dense(3, 2, backend=be), "relu"),
        TypeError,
        r"Sequential: item 1 is str, not a Layer",
    ),
    Case(
        "predict-wrong-width",
        lambda be, _: small_mlp(be).predict(np.ones((5, 4))),
        ShapeError,
        DENSE_INPUT + r", got \(5, 4\)",
    ),
    Case(
        "predict-int-data",
        lambda be, _: small_mlp(be).predict(np.ones((5, 3), dtype=np.int32)),
        DTypeError,
        r"Dense\(3, 4\): expected input of dtype float64, got .*int32.*cast to float",
    ),
    Case(
        "predict-string-data",
        lambda be, _: small_mlp(be).predict(np.array([["1", "2", "3"]])),
        DTypeError,
        r"cannot use data of dtype <U1 \(need numbers\)",
    ),
    Case(
        "predict-object-data",
        lambda be, _: small_mlp(be).predict(np.array([[1.0, None, 3.0]], dtype=object)),
        DTypeError,
        r"cannot use data of dtype object",
    ),
    Case(
        "predict-1d-data",
        lambda be, _: small_mlp(be).predict(np.ones(3)),
        ShapeError,
        DENSE_INPUT + r", got \(3,\)",
    ),
    Case(
        "predict-zero-batch-size",
        lambda be, _: small_mlp(be).predict(np.ones((5, 3)), batch_size=0),
        ValueError,
        r"predict: batch_size must be an int >= 1, got 0",
    ),
    Case(
        "predict-negative-batch-size",
        lambda be, _: small_mlp(be).predict(np.ones((5, 3)), batch_size=-4),
        ValueError,
        r"predict: batch_size must be an int >= 1, got -4",
    ),
    Case(
        "predict-foreign-library",
        lambda be, _: small_mlp(be).predict(foreign(be)),
        BackendMismatchError,
        r"got an array of .*convert it explicitly",
    ),
    Case(
        "predict-other-device",
        lambda be, _: small_mlp(be).predict(other_device(be)),
        BackendMismatchError,
        r"device|convert it explicitly",
    ),
    Case(
        "mlp-unknown-activation",
        lambda be, _: ap.mlp([3, 2], activation="swish", backend=be),
        ValueError,
        r"unknown activation 'swish'; valid: relu, leaky_relu, sigmoid, tanh",
    ),
    Case(
        "mlp-unknown-output-activation",
        lambda be, _: ap.mlp([3, 2], output_activation="logsoftmax", backend=be),
        ValueError,
        r"unknown activation 'logsoftmax'; valid: relu",
    ),
    Case(
        "mlp-unknown-initializer",
        lambda be, _: ap.mlp([3, 2], init="kaiming_magic", backend=be),
        ValueError,
        r"unknown initializer 'kaiming_magic'; valid: .*he_uniform",
    ),
    Case(
        "mlp-one-size",
        lambda be, _: ap.mlp([3], backend=be),
        ValueError,
        r"mlp: need at least an input and an output size, got \[3\]",
    ),
    Case(
        "mlp-zero-width",
        lambda be, _: ap.mlp([3, 0, 2], backend=be),
        ValueError,
        r"mlp: sizes\[1\] must be an int >= 1, got 0",
    ),
    Case(
        "layer-from-unknown-config",
        lambda be, _: ap.nn.layer_from_config({"type": "Conv2d"}, backend=be),
        ValueError,
        r"unknown layer type 'Conv2d'; valid: .*Dense.*register your own",
    ),
    # losses: shared cases (one per loss) and label / target checks
    *_loss_cases(),
    Case(
        "softmax-ce-label-too-large",
        lambda be, _: _labels(be, [0, 1, 2, 0]),
        LabelError,
        r"SoftmaxCrossEntropy\(\): label 2 at index 2 is out of range for a model with 2 outputs "
        r"\(valid: 0..1\)",
    ),
    Case(
        "softmax-ce-negative-label",
        lambda be, _: _labels(be, [0, -1, 1, 0]),
        LabelError,
        r"SoftmaxCrossEntropy\(\): label -1 at index 1 is out of range for a model with 2",
    ),
    Case(
        "softmax-ce-float-labels",
        lambda be, _: _labels(be, [0.0, 1.0, 1.0]),
        LabelError,
        r"labels of shape \(3,\) must be integers, got .*float64",
    ),
    Case(
        "softmax-ce-bool-labels",
        lambda be, _: _labels(be, [True, False, True]),
        LabelError,
        r"must be integers, got .*bool",
    ),
    Case(
        "softmax-ce-label-count",
        lambda be, _: ap.SoftmaxCrossEntropy()(ones(be, (5, 2)), np.array([0, 1, 1])),
        ShapeError,
        r"SoftmaxCrossEntropy\(\): 3 labels for 5 logits rows",
    ),
    Case(
        "softmax-ce-1d-logits",
        lambda be, _: ap.SoftmaxCrossEntropy()(ones(be, (5,)), np.zeros(5, dtype=np.int64)),
        ShapeError,
        r"logits must have shape \(batch, classes\), got \(5,\)",
    ),
    Case(
        "softmax-ce-3d-logits",
        lambda be, _: ap.SoftmaxCrossEntropy()(ones(be, (5, 2, 2)), np.zeros(5, dtype=np.int64)),
        ShapeError,
        r"logits must have shape \(batch, classes\), got \(5, 2, 2\)",
    ),
    Case(
        "bce-target-above-one",
        lambda be, _: _labels(be, [[0.0], [2.0]], k=1, loss=ap.BinaryCrossEntropy()),
        LabelError,
        r"BinaryCrossEntropy\(from_logits=False\): target 2.0 is outside \[0, 1\]",
    ),
    Case(
        "bce-logits-negative-target",
        lambda be, _: _labels(be, [[-1.0], [1.0]], k=1, loss=ap.BinaryCrossEntropy(True)),
        LabelError,
        r"BinaryCrossEntropy\(from_logits=True\): target -1.0 is outside \[0, 1\]",
    ),
    Case(
        "loss-0d-prediction",
        lambda be, _: ap.L2Loss(reduction="mean")(be.asarray(np.float64(0.5)), np.float64(1.0)),
        ShapeError,
        r"L2Loss\(reduction='mean'\): predictions must have a batch axis, got a 0-d array",
    ),
    Case(
        "bce-column-target-rows",
        lambda be, _: ap.BinaryCrossEntropy()(ones(be, (3, 1)), np.zeros(2)),
        ShapeError,
        r"target shape \(2,\) does not match prediction shape \(3, 1\)",
    ),
    Case(
        "get-loss-unknown",
        lambda be, _: ap.get_loss("hinge"),
        ValueError,
        r"unknown loss 'hinge'; valid: softmax-ce, .*bce, mse",
        host_only=True,
    ),
    Case(
        "l2-unknown-reduction",
        lambda be, _: ap.L2Loss(reduction="max"),
        ValueError,
        r"L2Loss: reduction must be one of 'sum', 'mean', got 'max'",
        host_only=True,
    ),
    # gradcheck
    Case(
        "gradcheck-wrong-width",
        lambda be, _: ap.gradcheck(small_mlp(be), np.ones((2, 5))),
        ShapeError,
        DENSE_INPUT + r", got \(2, 5\)",
    ),
    Case(
        "gradcheck-not-a-model",
        lambda be, _: ap.gradcheck(lambda x: x, np.ones((2, 5))),
        TypeError,
        r"gradcheck: expected a Layer, Sequential or Loss, got function",
    ),
    Case(
        "gradcheck-loss-target-shape",
        lambda be, _: ap.gradcheck(ap.MSE(), ones(be, (2, 3)), np.ones((2, 4))),
        ShapeError,
        r"MSE\(\): target shape \(2, 4\) does not match prediction shape \(2, 3\)",
    ),
    Case(
        "gradcheck-bad-labels",
        lambda be, _: (
            needs_host_check(be),
            ap.gradcheck(
                small_mlp(be), np.ones((2, 3)), np.array([0, 5]), loss=ap.SoftmaxCrossEntropy()
            ),
        ),
        LabelError,
        r"SoftmaxCrossEntropy\(\): label 5 at index 1 is out of range for a model with 2",
    ),
]


@badinput.backend_rows(CASES)
def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
    badinput.check(case, backend, tmp_path)


@badinput.host_rows(CASES)
def test_bad_host_input_raises_a_named_arrayprop_error(case, tmp_path):
    badinput.check(case, None, tmp_path)


# -- regressions found by the table ------------------------------------------------------


def test_predict_slices_in_batches_on_every_backend(backend, rng):
    # array_api_strict refuses x[i:j] on a 2-D array (flat indexing is not in the standard).
    model = ap.mlp([3, 5, 2], seed=0, backend=backend)
    x = rng.standard_normal((7, 3))
    w0, b0 = (backend.to_host(p.data) for p in model.layers[0].parameters())
    w1, b1 = (backend.to_host(p.data) for p in model.layers[2].parameters())
    expected = np.maximum(x @ w0 + b0, 0.0) @ w1 + b1
    for batch_size in (None, 2, 7, 100):
        out = backend.to_host(model.predict(x, batch_size=batch_size))
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_predict_takes_host_floats_of_another_precision(backend, rng):
    # On NumPy a host float64 array is also a backend array; predict must still cast it.
    be32 = backend.with_dtype("float32")
    model = ap.mlp([3, 2], seed=0, backend=be32)
    out = model.predict(rng.standard_normal((4, 3)))
    assert out.dtype == be32.dtype


def test_dense_rejects_an_input_on_another_device_of_the_same_library():
    # Same array type, other device: the type check alone let it through to the matmul.
    xs = pytest.importorskip("array_api_strict")
    be = ap.get_backend("array_api_strict", dtype="float64")
    layer = ap.Dense(3, 2, seed=0, backend=be)
    x = xs.ones((4, 3), dtype=xs.float64, device=xs.Device("device1"))
    with pytest.raises(BackendMismatchError, match=r"Dense\(3, 2\) input.*device1"):
        layer.forward(x)


@pytest.mark.parametrize("layer_kind", ["dense", "tanh", "softmax"])
def test_backward_rejects_a_gradient_of_another_dtype_or_library(backend, layer_kind):
    def build():
        if layer_kind == "dense":
            return ap.Dense(3, 2, seed=0, backend=backend)
        layer = ap.Tanh() if layer_kind == "tanh" else ap.Softmax()
        layer.backend = backend
        return layer

    width = 2 if layer_kind == "dense" else 3
    x = backend.asarray(np.ones((4, 3)))
    layer = build()
    layer.forward(x)
    with pytest.raises(DTypeError, match="gradient of dtype"):
        layer.backward(backend.asarray(np.ones((4, width), dtype=np.int64)))
    layer = build()
    layer.forward(x)
    # A host array given to a non-NumPy layer (or a torch tensor to a NumPy one).
    other = np.ones((4, width)) if backend.name != "numpy" else foreign(backend, (4, width))
    with pytest.raises(BackendMismatchError, match="gradient"):
        layer.backward(other)


def test_rmse_runs_on_every_backend(backend, rng):
    # RMSE used finfo().tiny, which the standard (and array_api_strict) calls smallest_normal.
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    value, grad = ap.RMSE().value_and_grad(backend.asarray(y), t)
    c = np.sqrt(np.mean((y - t) ** 2))
    np.testing.assert_allclose(float(backend.to_host(value)), c, rtol=1e-12)
    np.testing.assert_allclose(backend.to_host(grad), (y - t) / (y.size * c), rtol=1e-12)
    zero = ap.RMSE().value_and_grad(backend.asarray(t), t)[1]
    np.testing.assert_array_equal(backend.to_host(zero), np.zeros_like(t))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_a_loss_of_an_empty_batch_is_a_data_error(backend, loss):
    # Was 0/0: NaN with a RuntimeWarning (NumPy, array_api_strict) or ZeroDivisionError.
    pred = backend.asarray(np.zeros((0, K)))
    target = (
        np.zeros(0, dtype=np.int64)
        if isinstance(loss, ap.SoftmaxCrossEntropy)
        else np.zeros((0, K))
    )
    with pytest.raises(DataError, match="empty batch"):
        loss.value_and_grad(pred, target)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("bad", [2.0, -0.5, np.nan])
def test_bce_refuses_targets_outside_0_1(backend, from_logits, bad):
    # Was silently accepted: with from_logits a target of 2 makes the loss unbounded below.
    target = np.array([[0.0, 1.0], [0.25, bad]])
    loss = ap.BinaryCrossEntropy(from_logits=from_logits)
    pred = backend.asarray(np.full((2, 2), 0.5))
    if not backend.on_host:
        pytest.skip("the range check reads targets back only where that costs no device sync")
    with pytest.raises(LabelError, match=r"outside \[0, 1\]"):
        loss.value_and_grad(pred, target)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_non_numeric_targets_are_a_dtype_error(backend, loss):
    # On NumPy a string array counts as a backend array and reached xp.astype deep inside.
    pred = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(DTypeError, match="need numbers"):
        loss.value_and_grad(pred, np.array([["a", "b", "c"]] * 2))


def test_gradcheck_of_something_that_is_not_a_layer_is_a_type_error():
    # Was AttributeError: 'str' object has no attribute 'backend'.
    with pytest.raises(TypeError, match="gradcheck: expected a Layer, Sequential or Loss, got str"):
        ap.gradcheck("mlp", np.ones((2, 2)))
