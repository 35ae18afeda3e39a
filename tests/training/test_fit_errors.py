"""fit, evaluate and predict refuse bad input with the named error: shapes, values (host and
device), arguments and arrays of another library.

The one-row-per-mistake table for training is tests/training/test_bad_input_training.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import (
    BackendMismatchError,
    DataError,
    LabelError,
    NonFiniteError,
    ShapeError,
)


def _fit(model, x, y, **kw):
    args = {"loss": "softmax-ce", "optimizer": "sgd", "epochs": 1, "progress": None}
    args.update(kw)
    return ap.fit(model, x, y, **args)


@pytest.fixture
def model64():
    return ap.mlp([64, 8, 10], seed=0, backend="numpy")


def test_bad_shapes(model64, rng):
    x = rng.random((10, 64))
    y = rng.integers(0, 10, size=10)
    with pytest.raises(ShapeError, match=r"fit: x must have shape \(n, 64\), got \(640,\)"):
        _fit(model64, x.reshape(-1), y)
    with pytest.raises(
        ShapeError, match=r"x has 63 features per sample but the model's first layer Dense"
    ):
        _fit(model64, x[:, :63], y)
    with pytest.raises(ShapeError, match=r"fit: x has 10 samples but y has shape \(9,\)"):
        _fit(model64, x, y[:9])
    with pytest.raises(ShapeError, match=r"y must have shape \(10,\) \(labels\) or \(10, 10\)"):
        _fit(model64, x, np.zeros((10, 3)))
    with pytest.raises(ShapeError, match=r"validation_data: x has 63 features"):
        _fit(model64, x, y, validation_data=(x[:, :63], y))
    with pytest.raises(ShapeError, match="one-hot encode them"):
        _fit(model64, x, y, loss="mse")
    with pytest.raises(DataError, match=r"fit: x is empty \(0 samples\)"):
        _fit(model64, x[:0], y[:0])


def test_bad_values(model64, rng):
    x = rng.random((10, 64))
    y = rng.integers(0, 10, size=10)
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(NonFiniteError, match=r"fit: x contains nan at index \(3, 5\)"):
        _fit(model64, bad, y)
    with pytest.raises(LabelError, match=r"label 10 at index 4 is out of range .* 10 outputs"):
        _fit(model64, x, np.where(np.arange(10) == 4, 10, y))
    with pytest.raises(LabelError, match=r"label -1 at index 0"):
        _fit(model64, x, np.where(np.arange(10) == 0, -1, y))
    with pytest.raises(LabelError, match=r"must be integers 0\.\.9, got dtype float64"):
        _fit(model64, x, y.astype(float))
    reg = ap.mlp([64, 2], seed=0, backend="numpy")
    t = rng.random((10, 2))
    t[7, 1] = np.inf
    with pytest.raises(NonFiniteError, match=r"fit: y contains inf at index \(7, 1\)"):
        _fit(reg, x, t, loss="mse")


def test_bad_values_on_the_device(backend, rng):
    m = ap.mlp([4, 3], seed=0, backend=backend)
    x = rng.random((6, 4))
    y = rng.integers(0, 3, size=6)
    bad = x.copy()
    bad[2, 1] = np.inf
    with pytest.raises(NonFiniteError, match=r"fit: x contains inf at index \(2, 1\)"):
        _fit(m, backend.asarray(bad), backend.asarray(y))
    with pytest.raises(LabelError, match="label 3 at index 5"):
        _fit(m, backend.asarray(x), backend.asarray(np.where(np.arange(6) == 5, 3, y)))
    with pytest.raises(LabelError, match="must be integers"):
        _fit(m, backend.asarray(x), backend.asarray(y.astype(float)))


def test_bad_arguments(model64, rng):
    x = rng.random((10, 64))
    y = rng.integers(0, 10, size=10)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            _fit(model64, x, y, batch_size=bad)
    for bad in (0, -3, 1.0):
        with pytest.raises(ValueError, match="fit: epochs must be an int >= 1"):
            _fit(model64, x, y, epochs=bad)
    with pytest.raises(ValueError, match="resume=True needs a checkpoint path"):
        _fit(model64, x, y, resume=True)
    with pytest.raises(ValueError, match=r"does not update the model's parameters 0\.weight"):
        _fit(model64, x, y, optimizer=ap.SGD(ap.mlp([64, 8, 10], backend="numpy").parameters()))
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'"):
        _fit(model64, x, y, optimizer="sgdd")
    with pytest.raises(ValueError, match="unknown loss"):
        _fit(model64, x, y, loss="hinge")
    with pytest.raises(ValueError, match="validation_data must be a pair"):
        _fit(model64, x, y, validation_data=x)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        ap.evaluate(model64, x, y, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        ap.predict(model64, x, batch_size=-2)


def test_foreign_arrays_are_refused(model64, rng):
    torch = pytest.importorskip("torch")
    x = torch.zeros((4, 64), dtype=torch.float64)
    with pytest.raises(BackendMismatchError, match=r"fit: x: got a torch.Tensor"):
        _fit(model64, x, np.zeros(4, dtype=np.int64))
