"""Device→host reads during fit: one per epoch without a bar, one per progress refresh with
one, no per-step tensor reads on torch; and per-step sums reduced on the device every
``WINDOW_STEPS`` steps give the reference epoch numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
import arrayprop.training.api as train_mod
from fitref import Ref
from helpers import count_to_host


def test_sums_survive_on_device_reductions(backend, small, monkeypatch):
    x, y = small
    monkeypatch.setattr(train_mod, "WINDOW_STEPS", 3)  # 12 steps per epoch: 4 reductions
    model = ap.mlp([5, 6, 3], seed=0, backend=backend)
    ref = Ref(model)
    logs = ref.sgd(x, y, lr=0.1, epochs=2, batch=2, shuffle=True, seed=4)
    h = ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=ap.SGD(model.parameters(), lr=0.1),
        epochs=2,
        batch_size=2,
        seed=4,
        progress=None,
    )
    np.testing.assert_allclose(h.loss, [loss for loss, _ in logs], rtol=1e-10)
    np.testing.assert_allclose(h.accuracy, [acc for _, acc in logs], rtol=1e-12)


def test_one_read_per_epoch_without_a_bar(backend, rng, monkeypatch):
    x = rng.standard_normal((256, 8))
    y = rng.integers(0, 4, size=256)
    xv, yv = rng.standard_normal((40, 8)), rng.integers(0, 4, size=40)
    m = ap.mlp([8, 8, 4], seed=0, backend=backend)
    calls = count_to_host(monkeypatch)
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=3,
        batch_size=4,
        validation_data=(xv, yv),
        progress=None,
    )
    assert len(h) == 3
    # 64 steps per epoch, one device→host read per epoch; NumPy arrays are already on the
    # numpy backend's "device", so there the two data sets get their one up-front check too
    checks = 2 if backend.name == "numpy" else 0
    assert len(calls) == checks + 3
    calls.clear()
    xd, yd = backend.asarray(x), backend.asarray(y)
    ap.fit(m, xd, yd, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=4, progress=None)
    assert len(calls) == 1 + 2  # one up-front check of the device data, then one per epoch


def test_reads_follow_progress_refreshes(rng, monkeypatch):
    x = rng.standard_normal((64, 8))
    y = rng.integers(0, 4, size=64)
    m = ap.mlp([8, 8, 4], seed=0, dtype="float64", backend="numpy")
    calls = count_to_host(monkeypatch)
    monkeypatch.setattr(train_mod, "REFRESH_SECONDS", 0.0)  # refresh after every step
    ap.fit(m, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8, progress="bar")
    # the up-front check of the data (NumPy arrays are on the numpy backend's "device"), then
    # a read per refresh (after each of the 8 steps) and one at each epoch end
    assert len(calls) == 1 + 2 * (8 + 1)
    calls.clear()
    monkeypatch.setattr(train_mod, "REFRESH_SECONDS", 1e9)  # never due within the run
    ap.fit(m, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8, progress="bar")
    assert len(calls) == 1 + 2


def test_no_tensor_reads_per_step_on_torch(rng, monkeypatch):
    torch = pytest.importorskip("torch")
    be = ap.get_backend("torch", dtype="float64")
    x = be.asarray(rng.standard_normal((256, 8)))
    y = be.asarray(rng.integers(0, 4, size=256))
    m = ap.mlp([8, 8, 4], seed=0, backend=be)
    counts = {}
    for name in ("item", "__float__", "__bool__", "__int__", "tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    ap.fit(m, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=4, progress=None)
    monkeypatch.undo()
    # 128 steps; each read is one .cpu() and one .numpy() (plus the up-front data check)
    assert sum(counts.values()) <= 2 * (1 + 2), counts
