"""Bad input gives a clear arrayprop exception, on every backend, everywhere in the public API.

The table below lists one case per kind of mistake a user makes (wrong shape, integer data, a
dtype the backend lacks, an array of another library or device, bad labels, empty data,
non-positive hyperparameters, unknown names ...). Each case runs on every backend of the
``backend`` fixture and must raise the named arrayprop exception with a message that names the
problem. The regression tests after the table pin down the core bugs these cases found.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ckpt
from arrayprop.checkpoint.format import canonical_json, checksum
from arrayprop.data import batches, load_idx, make_spirals, one_hot, standardize, train_val_split
from arrayprop.errors import (
    BackendMismatchError,
    BackendUnavailableError,
    CheckpointError,
    DataError,
    DTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
)

ALL_LOSSES = [
    ap.MSE(),
    ap.RMSE(),
    ap.L2Loss(),
    ap.L2Loss(reduction="mean"),
    ap.BinaryCrossEntropy(),
    ap.BinaryCrossEntropy(from_logits=True),
    ap.SoftmaxCrossEntropy(),
]

# -- helpers building the bad arguments -------------------------------------------------------


def _model(be, sizes=(3, 4, 2), activation="relu"):
    return ap.mlp(list(sizes), activation=activation, seed=0, backend=be)


def _x(be, shape=(5, 3), dtype=None):
    return be.asarray(np.ones(shape, dtype=dtype))


def _foreign(be, shape=(5, 3)):
    """An array of another array library than ``be``'s."""
    if be.name != "array_api_strict":
        xs = pytest.importorskip("array_api_strict")
        return xs.ones(shape, dtype=xs.float64)
    torch = pytest.importorskip("torch")
    return torch.ones(shape, dtype=torch.float64)


def _other_device(be, shape=(5, 3)):
    """An array of ``be``'s library on another device (another library where it has only one)."""
    if be.name == "array_api_strict":
        xs = pytest.importorskip("array_api_strict")
        device = "device1" if str(be.device) != str(xs.Device("device1")) else "device2"
        return xs.ones(shape, dtype=xs.float64, device=xs.Device(device))
    if be.name == "torch":
        import torch

        # The meta device exists in every torch build, so a second device needs no GPU.
        return torch.ones(shape, dtype=torch.float64, device="meta")
    return _foreign(be, shape)


def _after_forward(layer, be, x_shape=(5, 3)):
    layer.forward(_x(be, x_shape))
    return layer


def _dense_backend_pair(be):
    return ap.Sequential(
        ap.Dense(3, 4, backend=be), ap.Dense(4, 2, backend=be.with_dtype("float32"))
    )


def _lacking(be, dtype):
    """Skip unless ``be``'s library lacks ``dtype``, then ask for it."""
    try:
        ap.get_backend(be.name, device=be.device, dtype=dtype)
    except DTypeError:
        return ap.get_backend(be.name, device=be.device, dtype=dtype)
    pytest.skip(f"{be.name} has {dtype}")


def _unknown_device(be):
    name = {"numpy": "cuda", "array_api_strict": "device9", "torch": "cuda:99"}.get(be.name)
    if name is None:
        pytest.skip(f"no known-missing device for {be.name}")
    return ap.get_backend(be.name, device=name, dtype="float64")


def _needs_host_check(be):
    if not be.on_host:
        pytest.skip("label ranges are checked per step only where that costs no device sync")


def _labels(be, values, k=2, loss=None):
    _needs_host_check(be)
    loss = loss or ap.SoftmaxCrossEntropy()
    return loss.value_and_grad(_x(be, (len(values), k)), np.asarray(values))


def _idx(tmp, content: bytes):
    path = tmp / "bad.idx"
    path.write_bytes(content)
    return load_idx(path)


def _step(be, x, y, loss=None, host_check=False):
    if host_check:
        _needs_host_check(be)
    model = _model(be)
    return ap.train_step(model, loss or ap.SoftmaxCrossEntropy(), ap.SGD(model.parameters()), x, y)


def _fit(be, x=None, y=None, *, model=None, **kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3)) if x is None else x
    y = np.arange(20) % 2 if y is None else y
    args = dict(loss="softmax-ce", optimizer="sgd", epochs=1, progress=None)
    return ap.fit(model or _model(be), x, y, **{**args, **kw})


def _with_nan(shape=(20, 3), at=(0, 0)):
    x = np.random.default_rng(0).standard_normal(shape)
    x[at] = np.nan
    return x


def _saved(be, tmp, sizes=(3, 4, 2)):
    path = tmp / "saved.npz"
    model = _model(be, sizes)
    ckpt.save(model, path, optimizer=ap.Adam(model.parameters()))
    return path


def _fit_resume_other_model(be, tmp):
    path = tmp / "run.npz"
    _fit(be, checkpoint=path)
    return _fit(be, model=_model(be, (3, 5, 2)), checkpoint=path, resume=True, epochs=2)


def _newer_version(tmp):
    path = tmp / "newer.npz"
    ckpt.save(ap.mlp([2, 2], seed=0, backend="numpy"), path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    header["version"] = ckpt.FORMAT_VERSION + 1
    header["checksum"] = checksum(header, arrays)  # a valid file of a future version
    arrays["header"] = np.frombuffer(canonical_json(header), dtype=np.uint8)
    np.savez(path, **arrays)
    return ckpt.load(path)


def _write(tmp, name, data: bytes):
    path = tmp / name
    path.write_bytes(data)
    return path


# -- the table --------------------------------------------------------------------------------

DENSE_INPUT = r"Dense\(3, 4\): expected input of shape \(batch, 3\)"
LOSS_CASES = [
    ("mse", ap.MSE),
    ("rmse", ap.RMSE),
    ("l2", ap.L2Loss),
    ("bce", ap.BinaryCrossEntropy),
    ("bce_logits", lambda: ap.BinaryCrossEntropy(from_logits=True)),
    ("softmax_ce", ap.SoftmaxCrossEntropy),
]


class Case:
    """One bad call: ``call(be, tmp_path)`` must raise ``exc`` with a message matching ``match``.

    ``host_only`` cases do not involve a backend and run once, not once per backend.
    """

    def __init__(self, id, call, exc, match, host_only=False):
        self.id, self.call, self.exc, self.match, self.host_only = id, call, exc, match, host_only


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
                lambda be, _, make=make, t=target_like: make()(_x(be, (5, K)), t((5, K + 1))),
                ShapeError,
                r"target shape \(5, 3\) does not match .*\(5, 2\)",
            ),
            Case(
                f"{name}-target-rows",
                lambda be, _, make=make, t=target_like: make()(_x(be, (5, K)), t((4, K))),
                ShapeError,
                r"target shape \(4, 2\) does not match .*\(5, 2\)",
            ),
            Case(
                f"{name}-int-predictions",
                lambda be, _, make=make: make()(_x(be, (5, K), np.int64), np.zeros((5, K))),
                DTypeError,
                r"predictions must be floating point, got .*int64",
            ),
            Case(
                f"{name}-bool-predictions",
                lambda be, _, make=make: make()(_x(be, (5, K), bool), np.zeros((5, K))),
                DTypeError,
                r"predictions must be floating point, got .*bool",
            ),
            Case(
                f"{name}-foreign-target",
                lambda be, _, make=make: make()(_x(be, (5, K)), _foreign(be, (5, K))),
                BackendMismatchError,
                r"convert it explicitly|expected an array of",
            ),
            Case(
                f"{name}-other-device-target",
                lambda be, _, make=make: make()(_x(be, (5, K)), _other_device(be, (5, K))),
                BackendMismatchError,
                r"device|convert it explicitly",
            ),
            Case(
                f"{name}-empty-batch",
                lambda be, _, make=make: make()(_x(be, (0, K)), np.zeros((0, K))),
                DataError,
                r"empty batch",
            ),
            Case(
                f"{name}-string-target",
                lambda be, _, make=make: make()(_x(be, (2, K)), np.array([["a", "b"]] * 2)),
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


CASES = [
    # Dense
    Case(
        "dense-wrong-width",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_x(be, (5, 7))),
        ShapeError,
        DENSE_INPUT + r", got \(5, 7\)",
    ),
    Case(
        "dense-1d-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_x(be, (3,))),
        ShapeError,
        DENSE_INPUT + r", got \(3,\)",
    ),
    Case(
        "dense-3d-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_x(be, (2, 5, 3))),
        ShapeError,
        DENSE_INPUT + r", got \(2, 5, 3\)",
    ),
    Case(
        "dense-int-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_x(be, (5, 3), np.int64)),
        DTypeError,
        r"Dense\(3, 4\): expected input of dtype float64, got .*int64",
    ),
    Case(
        "dense-uint8-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_x(be, (5, 3), np.uint8)),
        DTypeError,
        r"expected input of dtype float64, got .*uint8",
    ),
    Case(
        "dense-bool-input",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_x(be, (5, 3), bool)),
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
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_foreign(be)),
        BackendMismatchError,
        r"Dense\(3, 4\) input: expected an array of Backend",
    ),
    Case(
        "dense-other-device",
        lambda be, _: ap.Dense(3, 4, backend=be).forward(_other_device(be)),
        BackendMismatchError,
        r"Dense\(3, 4\) input: expected an array",
    ),
    Case(
        "dense-backward-before-forward",
        lambda be, _: ap.Dense(3, 4, backend=be).backward(_x(be, (5, 4))),
        RuntimeError,
        r"Dense\(3, 4\): backward called before forward",
    ),
    Case(
        "dense-backward-wrong-width",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(_x(be, (5, 3))),
        ShapeError,
        r"Dense\(3, 4\): expected gradient of shape \(batch, 4\), got \(5, 3\)",
    ),
    Case(
        "dense-backward-wrong-rows",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(_x(be, (6, 4))),
        ShapeError,
        r"Dense\(3, 4\): gradient has 6 rows but the input had 5",
    ),
    Case(
        "dense-backward-int-gradient",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(
            _x(be, (5, 4), np.int64)
        ),
        DTypeError,
        r"Dense\(3, 4\): expected a gradient of dtype .*float64, got .*int64",
    ),
    Case(
        "dense-backward-foreign-gradient",
        lambda be, _: _after_forward(ap.Dense(3, 4, backend=be), be).backward(_foreign(be, (5, 4))),
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
        r"Dense: in_features must be a positive int, got 0",
    ),
    Case(
        "dense-negative-width",
        lambda be, _: ap.Dense(3, -2, backend=be),
        ValueError,
        r"Dense: out_features must be a positive int, got -2",
    ),
    Case(
        "dense-float-width",
        lambda be, _: ap.Dense(3.0, 2, backend=be),
        ValueError,
        r"Dense: in_features must be a positive int, got 3.0",
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
        lambda be, _: ap.ReLU().forward(_x(be, (3,))),
        ShapeError,
        r"ReLU\(\): expected input of shape \(batch, features\), got \(3,\)",
    ),
    Case(
        "tanh-backward-before-forward",
        lambda be, _: ap.Tanh().backward(_x(be, (2, 3))),
        RuntimeError,
        r"Tanh\(\): backward called before forward",
    ),
    Case(
        "sigmoid-backward-wrong-shape",
        lambda be, _: _after_forward(ap.Sigmoid(), be).backward(_x(be, (5, 4))),
        ShapeError,
        r"Sigmoid\(\): gradient of shape \(5, 4\) does not match the output shape \(5, 3\)",
    ),
    Case(
        "softmax-backward-wrong-shape",
        lambda be, _: _after_forward(ap.Softmax(), be).backward(_x(be, (5, 2))),
        ShapeError,
        r"Softmax\(\): gradient of shape \(5, 2\) does not match the output shape \(5, 3\)",
    ),
    Case(
        "tanh-backward-int-gradient",
        lambda be, _: _after_forward(ap.Tanh(), be).backward(_x(be, (5, 3), np.int64)),
        DTypeError,
        r"Tanh\(\): expected a gradient of dtype",
    ),
    Case(
        "leaky-relu-alpha",
        lambda be, _: ap.LeakyReLU(alpha=2.0),
        ValueError,
        r"LeakyReLU: alpha must be in \(0, 1\), got 2.0",
    ),
    Case(
        "sequential-forward-wrong-width",
        lambda be, _: _model(be).forward(_x(be, (5, 4))),
        ShapeError,
        DENSE_INPUT + r", got \(5, 4\)",
    ),
    Case(
        "sequential-backward-wrong-shape",
        lambda be, _: _after_forward(_model(be), be).backward(_x(be, (5, 3))),
        ShapeError,
        r"Dense\(4, 2\): expected gradient of shape \(batch, 2\), got \(5, 3\)",
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
        lambda be, _: _model(be).predict(np.ones((5, 4))),
        ShapeError,
        DENSE_INPUT + r", got \(5, 4\)",
    ),
    Case(
        "predict-int-data",
        lambda be, _: _model(be).predict(np.ones((5, 3), dtype=np.int32)),
        DTypeError,
        r"Dense\(3, 4\): expected input of dtype float64, got .*int32.*cast to float",
    ),
    Case(
        "predict-string-data",
        lambda be, _: _model(be).predict(np.array([["1", "2", "3"]])),
        DTypeError,
        r"cannot use data of dtype <U1 \(need numbers\)",
    ),
    Case(
        "predict-object-data",
        lambda be, _: _model(be).predict(np.array([[1.0, None, 3.0]], dtype=object)),
        DTypeError,
        r"cannot use data of dtype object",
    ),
    Case(
        "predict-1d-data",
        lambda be, _: _model(be).predict(np.ones(3)),
        ShapeError,
        DENSE_INPUT + r", got \(3,\)",
    ),
    Case(
        "predict-zero-batch-size",
        lambda be, _: _model(be).predict(np.ones((5, 3)), batch_size=0),
        ValueError,
        r"predict: batch_size must be positive, got 0",
    ),
    Case(
        "predict-negative-batch-size",
        lambda be, _: _model(be).predict(np.ones((5, 3)), batch_size=-4),
        ValueError,
        r"predict: batch_size must be positive, got -4",
    ),
    Case(
        "predict-foreign-library",
        lambda be, _: _model(be).predict(_foreign(be)),
        BackendMismatchError,
        r"got an array of .*convert it explicitly",
    ),
    Case(
        "predict-other-device",
        lambda be, _: _model(be).predict(_other_device(be)),
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
        r"Dense: out_features must be a positive int, got 0",
    ),
    Case(
        "layer-from-unknown-config",
        lambda be, _: ap.nn.layer_from_config({"type": "Conv2d"}, backend=be),
        ValueError,
        r"unknown layer type 'Conv2d'; valid: Dense",
    ),
    # backends and dtypes
    Case(
        "backend-unknown-name",
        lambda be, _: ap.get_backend("tensorflow"),
        ValueError,
        r"unknown backend 'tensorflow'; valid backends: numpy, cupy, torch, jax",
        host_only=True,
    ),
    Case(
        "backend-integer-dtype",
        lambda be, _: ap.get_backend(be.name, dtype="int32"),
        DTypeError,
        r"unsupported model dtype 'int32'; choose one of .*float32",
    ),
    Case(
        "backend-float16-where-lacking",
        lambda be, _: _lacking(be, "float16"),
        DTypeError,
        r"has no dtype 'float16'",
    ),
    Case(
        "backend-bfloat16-where-lacking",
        lambda be, _: _lacking(be, "bfloat16"),
        DTypeError,
        r"has no dtype 'bfloat16'",
    ),
    Case(
        "backend-unknown-device",
        lambda be, _: _unknown_device(be),
        BackendUnavailableError,
        r"device|cuda",
    ),
    Case(
        "asarray-foreign-library",
        lambda be, _: be.asarray(_foreign(be)),
        BackendMismatchError,
        r"got an array of .*convert it explicitly",
    ),
    Case(
        "asarray-complex-data",
        lambda be, _: be.asarray(np.ones((2, 2), dtype=np.complex128)),
        DTypeError,
        r"cannot use data of dtype complex128 \(need numbers\)",
    ),
    Case(
        "to-host-foreign-library",
        lambda be, _: be.to_host(_foreign(be)),
        BackendMismatchError,
        r"expected an array of Backend",
    ),
    # losses: shared cases (one per loss) and label / target checks
    *_loss_cases(),
    Case(
        "softmax-ce-label-too-large",
        lambda be, _: _labels(be, [0, 1, 2, 0]),
        LabelError,
        r"label 2 is out of range for 2 classes \(valid: 0..1\)",
    ),
    Case(
        "softmax-ce-negative-label",
        lambda be, _: _labels(be, [0, -1, 1, 0]),
        LabelError,
        r"label -1 is out of range for 2 classes",
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
        lambda be, _: ap.SoftmaxCrossEntropy()(_x(be, (5, 2)), np.array([0, 1, 1])),
        ShapeError,
        r"SoftmaxCrossEntropy\(\): 3 labels for 5 logits rows",
    ),
    Case(
        "softmax-ce-1d-logits",
        lambda be, _: ap.SoftmaxCrossEntropy()(_x(be, (5,)), np.zeros(5, dtype=np.int64)),
        ShapeError,
        r"logits must have shape \(batch, classes\), got \(5,\)",
    ),
    Case(
        "softmax-ce-3d-logits",
        lambda be, _: ap.SoftmaxCrossEntropy()(_x(be, (5, 2, 2)), np.zeros(5, dtype=np.int64)),
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
        lambda be, _: ap.BinaryCrossEntropy()(_x(be, (3, 1)), np.zeros(2)),
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
        r"L2Loss: reduction must be 'sum' or 'mean', got 'max'",
        host_only=True,
    ),
    # optimizers
    *[
        Case(
            f"sgd-lr-{label}",
            lambda be, _, lr=lr: ap.SGD(_model(be).parameters(), lr=lr),
            ValueError,
            rf"SGD: lr must be a {need}, got {re_value}",
        )
        for label, lr, need, re_value in [
            ("zero", 0.0, "finite, positive number", "0.0"),
            ("negative", -0.1, "finite, positive number", "-0.1"),
            ("nan", float("nan"), "finite, positive number", "nan"),
            ("inf", float("inf"), "finite, positive number", "inf"),
            ("string", "0.1x", "number", "'0.1x'"),
        ]
    ],
    Case(
        "sgd-negative-momentum",
        lambda be, _: ap.SGD(_model(be).parameters(), lr=0.1, momentum=-0.9),
        ValueError,
        r"SGD: momentum must be a finite, non-negative number, got -0.9",
    ),
    Case(
        "sgd-negative-weight-decay",
        lambda be, _: ap.SGD(_model(be).parameters(), lr=0.1, weight_decay=-1),
        ValueError,
        r"SGD: weight_decay must be a finite, non-negative number, got -1.0",
    ),
    Case(
        "sgd-nesterov-without-momentum",
        lambda be, _: ap.SGD(_model(be).parameters(), lr=0.1, nesterov=True),
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
        lambda be, _: ap.SGD([_x(be)], lr=0.1),
        TypeError,
        r"SGD: expected Parameters, got",
    ),
    *[
        Case(
            f"{name}-lr-zero",
            lambda be, _, name=name: ap.get_optimizer(name, _model(be).parameters(), lr=0.0),
            ValueError,
            rf"{cls}: lr must be a finite, positive number, got 0.0",
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
        lambda be, _: ap.Adam(_model(be).parameters(), betas=0.9),
        ValueError,
        r"Adam: betas must be a pair \(beta1, beta2\), got 0.9",
    ),
    Case(
        "adam-beta-one",
        lambda be, _: ap.Adam(_model(be).parameters(), betas=(1.0, 0.999)),
        ValueError,
        r"Adam: betas\[0\] must lie in \[0, 1\), got 1.0",
    ),
    Case(
        "adam-zero-eps",
        lambda be, _: ap.Adam(_model(be).parameters(), eps=0.0),
        ValueError,
        r"Adam: eps must be a finite, positive number, got 0.0",
    ),
    Case(
        "rmsprop-alpha-one",
        lambda be, _: ap.RMSProp(_model(be).parameters(), alpha=1.0),
        ValueError,
        r"RMSProp: alpha must lie in \[0, 1\), got 1.0",
    ),
    Case(
        "optimizer-unknown-name",
        lambda be, _: ap.get_optimizer("adamax", _model(be).parameters()),
        ValueError,
        r"unknown optimizer 'adamax'; valid: sgd, adam, adamw, rmsprop, adagrad",
    ),
    Case(
        "optimizer-unknown-hyperparameter",
        lambda be, _: ap.get_optimizer("adam", _model(be).parameters(), momentum=0.9),
        ValueError,
        r"Adam: unknown hyperparameter\(s\) momentum; valid: lr, betas",
    ),
    Case(
        "clip-negative-norm",
        lambda be, _: ap.clip_grad_norm(_model(be).parameters(), -1.0),
        ValueError,
        r"clip_grad_norm: max_norm must be a finite, positive number, got -1.0",
    ),
    Case(
        "step-lr-zero-step",
        lambda be, _: ap.StepLR(ap.SGD(_model(be).parameters()), step_size=0),
        ValueError,
        r"StepLR: step_size must be a positive int, got 0",
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
        lambda be, _: _step(be, _x(be, (5, 3), np.int64), np.zeros(5, dtype=np.int64)),
        DTypeError,
        r"expected input of dtype float64, got .*int64",
    ),
    Case(
        "train-step-label-out-of-range",
        lambda be, _: _step(be, np.ones((4, 3)), np.array([0, 1, 7, 1]), host_check=True),
        LabelError,
        r"label 7 is out of range for 2 classes",
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
        lambda be, _: _step(be, _foreign(be, (4, 3)), np.zeros(4, dtype=np.int64)),
        BackendMismatchError,
        r"convert it explicitly|expected an array",
    ),
    # gradcheck
    Case(
        "gradcheck-wrong-width",
        lambda be, _: ap.gradcheck(_model(be), np.ones((2, 5))),
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
        lambda be, _: ap.gradcheck(ap.MSE(), _x(be, (2, 3)), np.ones((2, 4))),
        ShapeError,
        r"MSE\(\): target shape \(2, 4\) does not match prediction shape \(2, 3\)",
    ),
    Case(
        "gradcheck-bad-labels",
        lambda be, _: (
            _needs_host_check(be),
            ap.gradcheck(
                _model(be), np.ones((2, 3)), np.array([0, 5]), loss=ap.SoftmaxCrossEntropy()
            ),
        ),
        LabelError,
        r"label 5 is out of range for 2 classes",
    ),
    # fit / evaluate / predict
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
            _needs_host_check(be),
            _fit(be, model=_model(be, (3, 1)), y=np.full((20, 1), 2.0), loss="bce"),
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
        lambda be, _: _fit(be, _foreign(be, (20, 3))),
        BackendMismatchError,
        r"fit: x: got a .* which is neither host \(NumPy\) data nor an array of the model's",
    ),
    Case(
        "fit-other-device",
        lambda be, _: _fit(be, _other_device(be, (20, 3))),
        BackendMismatchError,
        r"fit: x: got a .*move it explicitly",
    ),
    *[
        Case(
            f"fit-{arg.replace('_', '-')}-{label}",
            lambda be, _, arg=arg, value=value: _fit(be, **{arg: value}),
            ValueError,
            rf"{arg} must be a positive int, got {value!r}",
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
        lambda be, _: _fit(be, optimizer=ap.SGD(_model(be).parameters())),
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
        r"progress must be True, False, None, 'bar' or 'lines', got 'fancy'",
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
        lambda be, _: ap.evaluate(_model(be), np.ones((5, 4)), np.zeros(5, dtype=int)),
        ShapeError,
        r"evaluate: x has 4 features per sample",
    ),
    Case(
        "evaluate-empty-data",
        lambda be, _: ap.evaluate(_model(be), np.ones((0, 3)), np.zeros(0, dtype=int)),
        DataError,
        r"evaluate: x is empty \(0 samples\)",
    ),
    Case(
        "evaluate-label-out-of-range",
        lambda be, _: ap.evaluate(_model(be), np.ones((4, 3)), np.array([0, 1, 9, 1])),
        LabelError,
        r"evaluate: y: label 9 at index 2 is out of range",
    ),
    Case(
        "evaluate-nan",
        lambda be, _: ap.evaluate(_model(be), _with_nan((4, 3), (1, 1)), np.zeros(4, dtype=int)),
        NonFiniteError,
        r"evaluate: x contains nan at index \(1, 1\)",
    ),
    Case(
        "evaluate-zero-batch-size",
        lambda be, _: ap.evaluate(
            _model(be), np.ones((4, 3)), np.zeros(4, dtype=int), batch_size=0
        ),
        ValueError,
        r"batch_size must be a positive int, got 0",
    ),
    Case(
        "predict-function-wrong-width",
        lambda be, _: ap.predict(_model(be), np.ones((5, 4))),
        ShapeError,
        r"predict: x has 4 features per sample",
    ),
    Case(
        "predict-function-empty-data",
        lambda be, _: ap.predict(_model(be), np.ones((0, 3))),
        DataError,
        r"predict: x is empty \(0 samples\)",
    ),
    Case(
        "predict-function-zero-batch-size",
        lambda be, _: ap.predict(_model(be), np.ones((5, 3)), batch_size=0),
        ValueError,
        r"batch_size must be a positive int, got 0",
    ),
    Case(
        "predict-function-foreign-library",
        lambda be, _: ap.predict(_model(be), _foreign(be)),
        BackendMismatchError,
        r"predict: x: got a .*move it explicitly",
    ),
    # checkpoints
    Case(
        "checkpoint-load-plain-npz",
        lambda be, tmp: (np.savez(tmp / "plain.npz", w=np.ones(3)), ckpt.load(tmp / "plain.npz")),
        CheckpointError,
        r"plain.npz: not an arrayprop checkpoint \(no 'header' member; a foreign .npz\?\)",
    ),
    Case(
        "checkpoint-load-random-bytes",
        lambda be, tmp: ckpt.load(_write(tmp, "noise.npz", bytes(range(256)) * 4)),
        CheckpointError,
        r"noise.npz: not an arrayprop checkpoint \(not an .npz / zip file\)",
    ),
    Case(
        "checkpoint-load-truncated",
        lambda be, tmp: ckpt.load(_write(tmp, "cut.npz", _saved(be, tmp).read_bytes()[:-100])),
        CheckpointError,
        r"cut.npz: truncated or corrupted file",
    ),
    Case(
        "checkpoint-load-newer-version",
        lambda be, tmp: _newer_version(tmp),
        CheckpointError,
        r"newer.npz: format version 2 is newer than this arrayprop reads \(up to 1\)",
    ),
    Case(
        "checkpoint-load-missing",
        lambda be, tmp: ckpt.load(tmp / "nowhere.npz"),
        FileNotFoundError,
        r"No such file or directory",
    ),
    Case(
        "checkpoint-load-onto-unknown-backend",
        lambda be, tmp: ckpt.load(_saved(be, tmp), backend="tensorflow"),
        ValueError,
        r"unknown backend 'tensorflow'",
    ),
    Case(
        "checkpoint-save-model-without-parameters",
        lambda be, tmp: ckpt.save(ap.Sequential(ap.Tanh()), tmp / "x.npz"),
        CheckpointError,
        r"cannot checkpoint Sequential\(Tanh\(\)\) to .*x.npz: it has no parameters",
    ),
    Case(
        "checkpoint-save-extra-not-json",
        lambda be, tmp: ckpt.save(_model(be), tmp / "x.npz", extra={"when": object()}),
        CheckpointError,
        r"header is not JSON-able",
    ),
    Case(
        "checkpoint-restore-other-optimizer",
        lambda be, tmp: ckpt.restore_optimizer(
            ap.SGD(_model(be).parameters()), ckpt.load(_saved(be, tmp), backend=be)
        ),
        CheckpointError,
        r"saved.npz: SGD: expected a state dict of 'sgd', got 'adam'",
    ),
    # data helpers (host-side: run once)
    Case(
        "one-hot-label-too-large",
        lambda be, _: one_hot([0, 3, 1], num_classes=3),
        LabelError,
        r"label 3 at index 1 is out of range \[0, 3\)",
        host_only=True,
    ),
    Case(
        "one-hot-negative-label",
        lambda be, _: one_hot([0, -2], num_classes=3),
        LabelError,
        r"label -2 at index 1 is out of range",
        host_only=True,
    ),
    Case(
        "one-hot-fractional-label",
        lambda be, _: one_hot([0.0, 1.5]),
        LabelError,
        r"label 1.5 at index 1 is not an integer",
        host_only=True,
    ),
    Case(
        "one-hot-nan-label",
        lambda be, _: one_hot([np.nan, 1.0]),
        LabelError,
        r"label nan at index 0 is not an integer",
        host_only=True,
    ),
    Case(
        "one-hot-string-labels",
        lambda be, _: one_hot(["cat", "dog"]),
        LabelError,
        r"labels must be integers, got an array of dtype <U3",
        host_only=True,
    ),
    Case(
        "one-hot-huge-inferred-classes",
        lambda be, _: one_hot(np.array([0, 1, 2**40])),
        LabelError,
        r"largest label, 1099511627776, implies num_classes=1099511627777; .* GiB",
        host_only=True,
    ),
    Case(
        "one-hot-zero-classes",
        lambda be, _: one_hot([0], num_classes=0),
        ValueError,
        r"num_classes must be at least 1, got 0",
        host_only=True,
    ),
    Case(
        "batches-zero-size",
        lambda be, _: batches(10, 0),
        ValueError,
        r"batch_size must be a positive integer or None, got 0",
        host_only=True,
    ),
    Case(
        "batches-negative-size",
        lambda be, _: batches(10, -3),
        ValueError,
        r"batch_size must be a positive integer or None, got -3",
        host_only=True,
    ),
    Case(
        "batches-negative-n",
        lambda be, _: batches(-1, 2),
        ValueError,
        r"n must be >= 0, got -1",
        host_only=True,
    ),
    Case(
        "split-length-mismatch",
        lambda be, _: train_val_split(np.ones((10, 2)), np.ones(9)),
        ShapeError,
        r"x has 10 samples but y has 9",
        host_only=True,
    ),
    Case(
        "split-fraction-one",
        lambda be, _: train_val_split(np.ones((10, 2)), np.ones(10), val_fraction=1.0),
        ValueError,
        r"val_fraction must be strictly between 0 and 1, got 1.0",
        host_only=True,
    ),
    Case(
        "split-one-sample",
        lambda be, _: train_val_split(np.ones((1, 2)), np.ones(1)),
        ValueError,
        r"cannot split 1 sample\(s\)",
        host_only=True,
    ),
    Case(
        "standardize-empty",
        lambda be, _: standardize(np.ones((0, 3))),
        ValueError,
        r"cannot compute mean/std of an empty array",
        host_only=True,
    ),
    Case(
        "spirals-zero-samples",
        lambda be, _: make_spirals(n=0),
        ValueError,
        r"n must be at least 1, got 0",
        host_only=True,
    ),
    Case(
        "spirals-negative-noise",
        lambda be, _: make_spirals(noise=-1.0),
        ValueError,
        r"noise must be a finite number >= 0, got -1.0",
        host_only=True,
    ),
    Case(
        "idx-truncated-header",
        lambda be, tmp: _idx(tmp, b"\x00\x00"),
        DataError,
        r"bad.idx: file too short for an IDX header \(2 bytes, need 4\)",
        host_only=True,
    ),
    Case(
        "idx-bad-magic",
        lambda be, tmp: _idx(tmp, b"PK\x03\x04" + bytes(20)),
        DataError,
        r"bad magic number",
        host_only=True,
    ),
    Case(
        "idx-unknown-type",
        lambda be, tmp: _idx(tmp, b"\x00\x00\x42\x01" + bytes(8)),
        DataError,
        r"unknown IDX type code 0x42",
        host_only=True,
    ),
    Case(
        "idx-short-data",
        lambda be, tmp: _idx(tmp, b"\x00\x00\x08\x01\x00\x00\x00\x10" + bytes(3)),
        DataError,
        r"expected 16 bytes of uint8 data for shape \(16,\), found 3",
        host_only=True,
    ),
    Case(
        "idx-corrupt-gzip",
        lambda be, tmp: _idx(tmp, b"\x1f\x8b" + bytes(10)),
        DataError,
        r"corrupt gzip stream",
        host_only=True,
    ),
    Case(
        "idx-missing-file",
        lambda be, tmp: load_idx(tmp / "nope.idx"),
        FileNotFoundError,
        r"IDX file not found",
        host_only=True,
    ),
]


BACKEND_CASES = [c for c in CASES if not c.host_only]
HOST_CASES = [c for c in CASES if c.host_only]
_PACKAGE_DIR = Path(ap.__file__).resolve().parent


def _check(case, be, tmp_path):
    with pytest.raises(case.exc) as info:
        case.call(be, tmp_path)
    err = info.value
    # Exactly the documented class (pytest.raises would also accept any subclass) ...
    assert type(err) is case.exc, f"{case.id}: {type(err).__name__}: {err}"
    # ... raised by arrayprop itself, not by numpy / torch / array_api_strict deep inside.
    last = info.traceback[-1]
    assert Path(str(last.path)).resolve().is_relative_to(_PACKAGE_DIR), (
        f"{case.id}: raised in {last.path}:{last.lineno}: {err}"
    )
    # The message names the problem: the thing, what was expected, what was found.
    assert re.search(case.match, str(err)), f"{case.id}: message {str(err)!r}"


@pytest.mark.parametrize("case", BACKEND_CASES, ids=lambda c: c.id)
def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
    _check(case, backend, tmp_path)


@pytest.mark.parametrize("case", HOST_CASES, ids=lambda c: c.id)
def test_bad_host_input_raises_a_named_arrayprop_error(case, tmp_path):
    _check(case, None, tmp_path)


def test_every_exception_class_is_covered_by_the_table():
    used = {c.exc for c in CASES}
    for cls in (
        ShapeError,
        DTypeError,
        BackendMismatchError,
        BackendUnavailableError,
        LabelError,
        NonFiniteError,
        DataError,
        CheckpointError,
    ):
        assert cls in used, cls.__name__


# -- regressions found by the table ----------------------------------------------------------


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
    other = np.ones((4, width)) if backend.name != "numpy" else _foreign(backend, (4, width))
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


@pytest.mark.parametrize("value", ["fast", None, [0.1]])
def test_a_non_numeric_learning_rate_is_named(backend, value):
    # float("fast") raised "could not convert string to float", naming neither SGD nor lr.
    model = ap.mlp([2, 1], seed=0, backend=backend)
    with pytest.raises(ValueError, match="SGD: lr must be a number"):
        ap.SGD(model.parameters(), lr=value)


def test_gradcheck_of_something_that_is_not_a_layer_is_a_type_error():
    # Was AttributeError: 'str' object has no attribute 'backend'.
    with pytest.raises(TypeError, match="gradcheck: expected a Layer, Sequential or Loss, got str"):
        ap.gradcheck("mlp", np.ones((2, 2)))


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
