"""Where fit's data lives: host and device inputs give identical runs; memmapped data moves to
the device in chunks within ``max_device_bytes`` (one copy per chunk, none per step) for
fit, evaluate and predict, with the numbers of an unchunked run.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
import fitref
from fitref import Ref, assert_weights, model_weights


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny matrices: torch's intra-op threads only contend for the cores (10x slower here)."""
    with fitref.one_torch_thread():
        yield


@pytest.fixture(scope="module")
def digits():
    return fitref.digits()


def test_host_and_device_inputs_give_identical_results(backend, digits):
    x, y, xt, yt = digits
    x, y = x[:160], y[:160]
    runs = []
    for to_device in (False, True):
        m = ap.mlp([64, 16, 10], seed=0, backend=backend)
        xs = backend.asarray(x) if to_device else x
        ys = backend.asarray(y) if to_device else y
        vx = backend.asarray(xt[:50]) if to_device else xt[:50]
        vy = backend.asarray(yt[:50]) if to_device else yt[:50]
        h = ap.fit(
            m,
            xs,
            ys,
            loss="softmax-ce",
            optimizer=ap.SGD(m.parameters(), lr=0.1),
            epochs=2,
            batch_size=16,
            seed=3,
            validation_data=(vx, vy),
            progress=None,
        )
        runs.append((model_weights(m), h))
    assert_weights(runs[0][0], runs[1][0], exact=True)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert getattr(runs[0][1], key) == getattr(runs[1][1], key)


def _spy_asarray(monkeypatch, width):
    """Record the shapes of the host arrays of ``width`` columns moved to a device."""
    shapes = []
    original = ap.Backend.asarray

    def spy(self, x, dtype=None, **kw):
        if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == width:
            shapes.append(x.shape)
        return original(self, x, dtype, **kw)

    monkeypatch.setattr(ap.Backend, "asarray", spy)
    return shapes


def _memmaps(tmp_path, x, y):
    xm = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=x.shape)
    ym = np.memmap(tmp_path / "y.dat", dtype=np.int64, mode="w+", shape=y.shape)
    xm[:] = x
    ym[:] = y
    xm.flush()
    ym.flush()
    return (
        np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="r", shape=x.shape),
        np.memmap(tmp_path / "y.dat", dtype=np.int64, mode="r", shape=y.shape),
    )


@pytest.mark.parametrize("shuffle", [True, False])
def test_memmap_input_moves_in_chunks(backend, digits, tmp_path, monkeypatch, shuffle):
    x, y, _, _ = digits
    x, y = x[:300], y[:300]
    xm, ym = _memmaps(tmp_path, x, y)
    # A float64 model stores a sample as 64 float64 features + one int64 label = 520 bytes;
    # the budget holds the shuffled order (8 bytes a sample) and three chunks at once (the
    # current one, the next one read from the host and its converted copy): three chunks of
    # 64 such rows (plus change) give chunks of 64 rows (a multiple of 16).
    budget = 3 * 64 * (64 * 8 + 8) + 8 * 300 + 100
    shapes = _spy_asarray(monkeypatch, 64)
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    h = ap.fit(
        m,
        xm,
        ym,
        loss="softmax-ce",
        optimizer=ap.SGD(m.parameters(), lr=0.1),
        epochs=2,
        batch_size=16,
        shuffle=shuffle,
        seed=5,
        max_device_bytes=budget,
        progress=None,
    )
    per_epoch = [(64, 64)] * 4 + [(44, 64)]
    assert shapes == per_epoch * 2  # one copy per chunk, none per step
    monkeypatch.undo()
    # Chunking is invisible to the numbers: the same run with the data on the device at once.
    shapes = _spy_asarray(monkeypatch, 64)
    m2 = ap.mlp([64, 16, 10], seed=0, backend=backend)
    h2 = ap.fit(
        m2,
        np.array(x),
        y,
        loss="softmax-ce",
        optimizer=ap.SGD(m2.parameters(), lr=0.1),
        epochs=2,
        batch_size=16,
        shuffle=shuffle,
        seed=5,
        progress=None,
    )
    assert shapes == [(300, 64)]  # fits the default budget: moved once for both epochs
    assert_weights(model_weights(m), model_weights(m2), rtol=1e-12)
    np.testing.assert_allclose(h.loss, h2.loss, rtol=1e-12)


def test_memmap_predict_and_evaluate_in_chunks(backend, digits, tmp_path, monkeypatch):
    x, y, _, _ = digits
    xm, ym = _memmaps(tmp_path, x[:100], y[:100])
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    ref = Ref(m)
    logits = ref.forward(x[:100].astype(np.float64))[-1]
    shapes = _spy_asarray(monkeypatch, 64)
    out = ap.predict(m, xm, batch_size=8, max_device_bytes=3 * 40 * 64 * 8 + 8 * 100)
    assert shapes == [(40, 64), (40, 64), (20, 64)]
    assert isinstance(out, backend.array_type)
    np.testing.assert_allclose(backend.to_host(out), logits, rtol=1e-10, atol=1e-12)
    result = ap.evaluate(m, xm, ym, loss="softmax-ce", batch_size=8, max_device_bytes=3000)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert result["loss"] == pytest.approx(-logp[np.arange(100), y[:100]].mean(), rel=1e-10)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y[:100]))
