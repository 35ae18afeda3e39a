"""fit / evaluate / predict: numbers against a NumPy reference written here, on every backend.

The reference (``_Ref``) is plain NumPy float64 forward and backward passes of an MLP with a
softmax cross-entropy head, and plain mini-batch SGD over the orders that fit documents
(``numpy.random.default_rng(seed).permutation(n)`` per epoch).
"""

from __future__ import annotations

import math
import signal

import numpy as np
import pytest

import arrayprop as ap
import arrayprop.training.api as train_mod
from arrayprop.errors import (
    BackendMismatchError,
    CheckpointError,
    DataError,
    DivergenceError,
    LabelError,
    NonFiniteError,
    ShapeError,
)
from helpers import count_to_host

# -- the NumPy reference ---------------------------------------------------------------------------


def _act(kind, z):
    return np.maximum(z, 0) if kind == "relu" else 1 / (1 + np.exp(-z))


def _act_grad(kind, a):
    return (a > 0).astype(a.dtype) if kind == "relu" else a * (1 - a)


class _Ref:
    """An MLP in NumPy float64: weights Ws (in, out), biases bs; softmax-CE on integer labels."""

    def __init__(self, model, act="relu"):
        be = model.backend
        dense = [layer for layer in model.layers if hasattr(layer, "in_features")]
        self.Ws = [be.to_host(d.weight.data).astype(np.float64) for d in dense]
        self.bs = [be.to_host(d.bias.data).astype(np.float64) for d in dense]
        self.act = act

    def forward(self, x):
        a = [x]
        for i, (W, b) in enumerate(zip(self.Ws, self.bs, strict=True)):
            z = a[-1] @ W + b
            a.append(_act(self.act, z) if i < len(self.Ws) - 1 else z)
        return a

    def loss_and_grads(self, x, y):
        a = self.forward(x)
        logits = a[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        n = x.shape[0]
        loss = -logp[np.arange(n), y].mean()
        delta = np.exp(logp)
        delta[np.arange(n), y] -= 1
        delta /= n
        gW, gb = [None] * len(self.Ws), [None] * len(self.Ws)
        for i in range(len(self.Ws) - 1, -1, -1):
            gW[i] = a[i].T @ delta
            gb[i] = delta.sum(axis=0)
            if i:
                delta = (delta @ self.Ws[i].T) * _act_grad(self.act, a[i])
        correct = np.sum(logits.argmax(axis=1) == y)
        return loss, correct, gW, gb

    def sgd(self, x, y, *, lr, epochs, batch, shuffle, seed, steps=None):
        """Plain SGD; returns per-epoch (mean loss, accuracy). ``steps`` stops early."""
        rng = np.random.default_rng(seed)
        n = x.shape[0]
        B = n if batch is None else min(batch, n)
        logs, done = [], 0
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle and B < n else np.arange(n)
            total = correct = 0.0
            for s in range(0, n, B):
                if steps is not None and done == steps:
                    return logs
                idx = order[s : s + B]
                loss, c, gW, gb = self.loss_and_grads(x[idx], y[idx])
                total += loss * len(idx)
                correct += c
                for W, g in zip(self.Ws, gW, strict=True):
                    W -= lr * g
                for b, g in zip(self.bs, gb, strict=True):
                    b -= lr * g
                done += 1
            logs.append((total / n, correct / n))
        return logs


def _weights(model):
    return [model.backend.to_host(p.data).copy() for p in model.parameters()]


def _ref_weights(ref):
    out = []
    for W, b in zip(ref.Ws, ref.bs, strict=True):
        out += [W, b]
    return out


def _assert_weights(got, want, exact=False, rtol=1e-10):
    for g, w in zip(got, want, strict=True):
        if exact:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny matrices: torch's intra-op threads only contend for the cores (10x slower here)."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def small(rng):
    x = rng.standard_normal((23, 5))
    y = rng.integers(0, 3, size=23)
    return x, y


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = ap.data.load_digits(seed=0)
    return x, y, xt, yt


# -- batch modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, None], ids=["stochastic", "minibatch", "fullbatch"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_batch_modes_match_numpy_sgd(backend, small, batch, shuffle):
    x, y = small
    model = ap.mlp([5, 6, 3], seed=0, backend=backend)
    ref = _Ref(model)
    logs = ref.sgd(x, y, lr=0.1, epochs=2, batch=batch, shuffle=shuffle, seed=7)
    h = ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=ap.SGD(model.parameters(), lr=0.1),
        epochs=2,
        batch_size=batch,
        shuffle=shuffle,
        seed=7,
        progress=None,
    )
    _assert_weights(_weights(model), _ref_weights(ref))
    np.testing.assert_allclose(h.loss, [loss for loss, _ in logs], rtol=1e-10)
    np.testing.assert_allclose(h.accuracy, [acc for _, acc in logs], rtol=1e-12)
    assert h.epochs == [1, 2]


def test_sums_survive_on_device_reductions(backend, small, monkeypatch):
    x, y = small
    monkeypatch.setattr(train_mod, "WINDOW_STEPS", 3)  # 12 steps per epoch: 4 reductions
    model = ap.mlp([5, 6, 3], seed=0, backend=backend)
    ref = _Ref(model)
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


def test_batch_larger_than_data_is_one_batch(small):
    x, y = small
    a = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    b = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    ha = ap.fit(
        a, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=1000, progress=None
    )
    hb = ap.fit(
        b, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=None, progress=None
    )
    _assert_weights(_weights(a), _weights(b), exact=True)
    assert ha.loss == hb.loss


# -- digits ----------------------------------------------------------------------------------------


def test_digits_reach_high_test_accuracy_numpy(digits):
    x, y, xt, yt = digits
    x, mean, std = ap.data.standardize(x)
    xt, _, _ = ap.data.standardize(xt, mean, std)
    model = ap.mlp([64, 128, 10], seed=0, backend="numpy")
    opt = ap.Adam(model.parameters(), lr=0.003)
    h = ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=15,
        batch_size=32,
        seed=0,
        schedule=ap.CosineAnnealingLR(opt, 15),
        validation_data=(xt, yt),
        progress=None,
    )
    result = ap.evaluate(model, xt, yt, loss="softmax-ce")
    assert result["accuracy"] >= 0.95
    assert h.val_accuracy[-1] == pytest.approx(result["accuracy"])
    assert h.val_loss[-1] == pytest.approx(result["loss"], rel=1e-6)
    assert h.loss[-1] < 0.1 < h.loss[0]
    # predicted classes agree with evaluate's accuracy
    pred = ap.predict(model, xt)
    assert np.mean(np.argmax(pred, axis=1) == yt) == pytest.approx(result["accuracy"])


def test_digits_same_on_every_backend(backend, digits):
    """A short run gives the numbers the NumPy backend gives (float64)."""
    x, y, xt, yt = digits
    x, y = x[:192], y[:192]

    def run(be):
        m = ap.mlp([64, 16, 10], seed=0, backend=be)
        opt = ap.SGD(m.parameters(), lr=0.1, momentum=0.9)
        h = ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=opt,
            epochs=2,
            batch_size=32,
            seed=1,
            validation_data=(xt[:64], yt[:64]),
            progress=None,
        )
        return _weights(m), h

    w, h = run(backend)
    w_np, h_np = run(ap.get_backend("numpy", dtype="float64"))
    _assert_weights(w, w_np, rtol=1e-9)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(getattr(h, key), getattr(h_np, key), rtol=1e-9)
    np.testing.assert_allclose(h.grad_norm, h_np.grad_norm, rtol=1e-9)


# -- where the data lives --------------------------------------------------------------------------


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
        runs.append((_weights(m), h))
    _assert_weights(runs[0][0], runs[1][0], exact=True)
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
    _assert_weights(_weights(m), _weights(m2), rtol=1e-12)
    np.testing.assert_allclose(h.loss, h2.loss, rtol=1e-12)


def test_memmap_predict_and_evaluate_in_chunks(backend, digits, tmp_path, monkeypatch):
    x, y, _, _ = digits
    xm, ym = _memmaps(tmp_path, x[:100], y[:100])
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    ref = _Ref(m)
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


def test_evaluate_and_predict_match_reference(backend, small):
    x, y = small
    m = ap.mlp([5, 6, 3], seed=2, backend=backend)
    logits = _Ref(m).forward(x)[-1]
    out = ap.predict(m, x, batch_size=4)
    assert isinstance(out, backend.array_type)
    assert tuple(out.shape) == (23, 3)
    np.testing.assert_allclose(backend.to_host(out), logits, rtol=1e-12, atol=1e-14)
    same = ap.predict(m, backend.asarray(x), batch_size=100)
    np.testing.assert_allclose(backend.to_host(same), logits, rtol=1e-12, atol=1e-14)
    onehot = np.eye(3)[y]
    r1 = ap.evaluate(m, x, y, loss="softmax-ce", batch_size=5)
    r2 = ap.evaluate(m, backend.asarray(x), backend.asarray(onehot), loss="softmax-ce")
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    for r in (r1, r2):
        assert r["loss"] == pytest.approx(-logp[np.arange(23), y].mean(), rel=1e-12)
        assert r["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    assert set(ap.evaluate(m, x, y)) == {"accuracy"}  # no loss asked for


# -- syncs -----------------------------------------------------------------------------------------


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


# -- divergence ------------------------------------------------------------------------------------


def _first_bad_step(backend, x, y, lr, batch, seed=0):
    """Step (from 1) whose loss is first non-finite, by syncing after every step."""
    m = ap.mlp([64, 16, 10], seed=seed, backend=backend)
    opt = ap.SGD(m.parameters(), lr=lr)
    loss = ap.SoftmaxCrossEntropy()
    weights = [_weights(m)]
    onehot = backend.asarray(np.eye(10)[y])
    xd = backend.asarray(x)
    for k, s in enumerate(range(0, x.shape[0], batch), start=1):
        with backend.float_errors_ignored():
            value = ap.train_step(m, loss, opt, xd[s : s + batch, ...], onehot[s : s + batch, ...])
        if not math.isfinite(float(backend.to_host(value))):
            return k, weights
        weights.append(_weights(m))
    raise AssertionError("no divergence")


def test_divergence_names_epoch_step_layer_and_restores_weights(backend, digits):
    x, y, _, _ = digits
    x, y = x[:256], y[:256]
    bad_step, _ = _first_bad_step(backend, x, y, lr=1e200, batch=8)
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    initial = _weights(m)
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=ap.SGD(m.parameters(), lr=1e200),
            epochs=3,
            batch_size=8,
            shuffle=False,
            progress=None,
        )
    err = info.value
    assert (err.epoch, err.step) == (1, bad_step)
    assert f"training diverged at epoch 1, step {bad_step} of 32" in str(err)
    assert err.layer is not None and err.layer.startswith(("layer 0 Dense", "layer 2 Dense"))
    assert err.layer in str(err)
    assert "restored to those of the start of training" in str(err)
    # without a bar the last finite read was the start: the weights are the initial ones
    _assert_weights(_weights(m), initial, exact=True)


@pytest.mark.parametrize("window", [1, 7, 1024])
def test_divergence_step_across_on_device_reductions(backend, monkeypatch, window):
    """A regression blowing up geometrically: the first non-finite loss comes late in the
    epoch, after several on-device reductions of the per-step values (WINDOW_STEPS)."""
    x, y, _, _ = ap.data.make_linear_regression(n=400, features=3, seed=0)
    m = ap.mlp([3, 1], seed=5, backend=backend)
    opt, loss = ap.SGD(m.parameters(), lr=20.0), ap.MSE()
    xd, yd = backend.asarray(x), backend.asarray(y)
    bad_step = None
    for k, s in enumerate(range(0, 400, 4), start=1):
        with backend.float_errors_ignored():
            value = ap.train_step(m, loss, opt, xd[s : s + 4, ...], yd[s : s + 4, ...])
        if not math.isfinite(float(backend.to_host(value))):
            bad_step = k
            break
    assert bad_step is not None and 20 < bad_step < 100
    monkeypatch.setattr(train_mod, "WINDOW_STEPS", window)
    m = ap.mlp([3, 1], seed=5, backend=backend)
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            m,
            x,
            y,
            loss="mse",
            optimizer=ap.SGD(m.parameters(), lr=20.0),
            epochs=2,
            batch_size=4,
            shuffle=False,
            progress=None,
        )
    assert (info.value.epoch, info.value.step) == (1, bad_step)


def test_divergence_granularity_is_one_refresh(digits, monkeypatch):
    be = ap.get_backend("numpy", dtype="float64")
    x, y = digits[0][:256], digits[1][:256]
    bad_step, weights = _first_bad_step(be, x, y, lr=1e200, batch=8)
    monkeypatch.setattr(train_mod, "REFRESH_SECONDS", 0.0)  # a read after every step
    m = ap.mlp([64, 16, 10], seed=0, backend=be)
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=ap.SGD(m.parameters(), lr=1e200),
            epochs=1,
            batch_size=8,
            shuffle=False,
            progress="bar",
        )
    err = info.value
    # Either the loss of bad_step, or already the weights after bad_step - 1, were non-finite.
    assert err.step in (bad_step - 1, bad_step)
    assert all(np.isfinite(w).all() for w in _weights(m))
    _assert_weights(_weights(m), weights[err.step - 1], exact=True)


def test_divergence_leaves_the_last_checkpoint_intact(digits, tmp_path):
    from arrayprop import checkpoint

    x, y = digits[0][:128], digits[1][:128]
    m = ap.mlp([64, 16, 10], seed=0, dtype="float64", backend="numpy")
    opt = ap.SGD(m.parameters(), lr=0.05)
    after_epoch = {}

    def blow_up(epoch, logs):
        after_epoch[epoch] = _weights(m)
        if epoch == 2:
            opt.lr = 1e200

    path = tmp_path / "ck.npz"
    with pytest.raises(DivergenceError, match="at epoch 3"):
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer=opt,
            epochs=5,
            batch_size=16,
            callbacks=[ap.LambdaCallback(blow_up)],
            checkpoint=path,
            progress=None,
        )
    saved = checkpoint.load(path, backend="numpy")
    assert saved.extra["fit"]["epoch"] == 2
    _assert_weights(_weights(saved.model), after_epoch[2], exact=True)
    _assert_weights(_weights(m), after_epoch[2], exact=True)


# -- interruption ----------------------------------------------------------------------------------


def test_keyboard_interrupt_from_a_callback_returns_history(backend, small, tmp_path):
    from arrayprop import checkpoint

    x, y = small

    def interrupt(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    m = ap.mlp([5, 6, 3], seed=0, backend=backend)
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=5,
        batch_size=4,
        callbacks=[ap.LambdaCallback(interrupt)],
        checkpoint=tmp_path / "c.npz",
        progress=None,
    )
    assert h.interrupted and h.epochs == [1, 2]
    assert checkpoint.load(tmp_path / "c.npz", backend=backend).extra["fit"]["epoch"] == 2
    out = backend.to_host(ap.predict(m, x))  # the model is usable
    assert np.isfinite(out).all()


def _interrupting_step(opt, at, *, before):
    """Patch opt.step: on call ``at`` raise KeyboardInterrupt before the update, or send
    SIGINT to this process after it."""
    original = opt.step
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        if before and calls["n"] == at:
            raise KeyboardInterrupt
        original()
        if not before and calls["n"] == at:
            signal.raise_signal(signal.SIGINT)

    opt.step = step


def test_keyboard_interrupt_inside_a_step_rolls_it_back(backend, small):
    x, y = small
    m = ap.mlp([5, 6, 3], seed=0, backend=backend)
    ref = _Ref(m)
    ref.sgd(x, y, lr=0.1, epochs=3, batch=4, shuffle=True, seed=2, steps=8)
    opt = ap.SGD(m.parameters(), lr=0.1)
    _interrupting_step(opt, 9, before=True)  # the 9th step never updates
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer=opt, epochs=3, batch_size=4, seed=2, progress=None
    )
    assert h.interrupted and h.epochs == [1]  # 6 steps per epoch: stopped in epoch 2
    _assert_weights(_weights(m), _ref_weights(ref))


def test_sigint_finishes_the_running_step(small):
    x, y = small
    be = ap.get_backend("numpy", dtype="float64")
    m = ap.mlp([5, 6, 3], seed=0, backend=be)
    ref = _Ref(m)
    ref.sgd(x, y, lr=0.1, epochs=3, batch=4, shuffle=True, seed=2, steps=9)
    opt = ap.SGD(m.parameters(), lr=0.1)
    _interrupting_step(opt, 9, before=False)  # Ctrl-C arrives during the 9th step
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer=opt, epochs=3, batch_size=4, seed=2, progress=None
    )
    assert h.interrupted and h.epochs == [1]
    _assert_weights(_weights(m), _ref_weights(ref))  # 9 whole steps
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- checkpoints and resume ------------------------------------------------------------------------


def _resume_setup(backend, optimizer="sgd"):
    m = ap.mlp([64, 16, 10], seed=0, backend=backend)
    if optimizer == "adam":
        opt = ap.Adam(m.parameters(), lr=0.01)
    else:
        opt = ap.SGD(m.parameters(), lr=0.1, momentum=0.9)
    return m, opt, ap.StepLR(opt, step_size=1, gamma=0.7)


def _resume_fit(m, opt, sched, x, y, xv, yv, **kw):
    return ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        schedule=sched,
        epochs=4,
        batch_size=16,
        seed=11,
        validation_data=(xv, yv),
        progress=None,
        **kw,
    )


@pytest.mark.parametrize("at", [2 * 6 + 4, 2 * 6 + 1], ids=["mid-epoch", "epoch-start"])
def test_resume_gives_exactly_the_uninterrupted_run(backend, digits, tmp_path, at):
    x, y, xv, yv = digits[0][:96], digits[1][:96], digits[2][:30], digits[3][:30]
    m, opt, sched = _resume_setup(backend)
    full = _resume_fit(m, opt, sched, x, y, xv, yv)
    w_full = _weights(m)

    path = tmp_path / "ck.npz"
    m, opt, sched = _resume_setup(backend)
    _interrupting_step(opt, at, before=True)
    part = _resume_fit(m, opt, sched, x, y, xv, yv, checkpoint=path)
    assert part.interrupted and part.epochs == [1, 2]

    # a fresh process: new model, optimizer and schedule; other seed (the checkpoint decides)
    m, opt, sched = _resume_setup(backend)
    rest = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        schedule=sched,
        epochs=4,
        batch_size=16,
        seed=999,
        validation_data=(xv, yv),
        progress=None,
        checkpoint=path,
        resume=True,
    )
    exact = backend.name == "numpy"
    _assert_weights(_weights(m), w_full, exact=exact, rtol=1e-12)
    assert rest.epochs == [1, 2, 3, 4] and not rest.interrupted
    assert rest.lr == full.lr
    np.testing.assert_allclose(rest.loss, full.loss, rtol=1e-12)
    np.testing.assert_allclose(rest.val_loss, full.val_loss, rtol=1e-12)
    assert rest.accuracy == pytest.approx(full.accuracy, rel=1e-12)


def test_resume_with_adam(digits, tmp_path):
    """Adam's moments and per-parameter step counters go through the checkpoint too."""
    be = ap.get_backend("numpy", dtype="float64")
    x, y, xv, yv = digits[0][:192], digits[1][:192], digits[2][:50], digits[3][:50]
    m, opt, sched = _resume_setup(be, "adam")
    _resume_fit(m, opt, sched, x, y, xv, yv)
    w_full = _weights(m)
    m, opt, sched = _resume_setup(be, "adam")
    _interrupting_step(opt, 30, before=True)
    _resume_fit(m, opt, sched, x, y, xv, yv, checkpoint=tmp_path / "a.npz")
    m, opt, sched = _resume_setup(be, "adam")
    _resume_fit(m, opt, sched, x, y, xv, yv, checkpoint=tmp_path / "a.npz", resume=True)
    _assert_weights(_weights(m), w_full, exact=True)


def test_checkpoint_every_and_resume_without_a_file(small, tmp_path):
    from arrayprop import checkpoint

    x, y = small
    path = tmp_path / "ck.npz"
    seen = []
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    spy = ap.LambdaCallback(lambda e, logs: seen.append(path.exists()))
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=5,
        batch_size=4,
        checkpoint=path,
        checkpoint_every=3,
        resume=True,
        callbacks=[spy],
        progress=None,
    )
    # no file at the start: resume=True starts afresh; saved after epoch 3 and at the end
    assert h.epochs == [1, 2, 3, 4, 5]
    assert seen == [False, False, False, True, True]
    saved = checkpoint.load(path, backend="numpy")
    assert saved.extra["fit"]["epoch"] == 5
    assert saved.extra["fit"]["history"]["epochs"] == [1, 2, 3, 4, 5]
    _assert_weights(_weights(saved.model), _weights(m), exact=True)
    # resuming a finished run trains nothing more
    again = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=5,
        batch_size=4,
        checkpoint=path,
        resume=True,
        progress=None,
    )
    assert again.epochs == h.epochs and again.loss == h.loss


def test_resume_mid_epoch_needs_the_same_batches(small, tmp_path):
    x, y = small
    path = tmp_path / "ck.npz"
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    opt = ap.SGD(m.parameters(), lr=0.1)
    _interrupting_step(opt, 3, before=True)
    ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=2,
        batch_size=4,
        checkpoint=path,
        progress=None,
    )
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    with pytest.raises(
        CheckpointError, match="saved within an epoch of 23 samples in batches of 4"
    ):
        ap.fit(
            m,
            x,
            y,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=2,
            batch_size=5,
            checkpoint=path,
            resume=True,
            progress=None,
        )


# -- History: gradient norms -----------------------------------------------------------------------


def test_grad_norms_are_those_of_the_last_step(backend, small):
    x, y = small
    m = ap.mlp([5, 6, 4, 3], activation="sigmoid", seed=0, backend=backend)
    ref = _Ref(m, act="sigmoid")
    _, _, gW, _ = ref.loss_and_grads(x, y)  # full batch, one epoch: the gradient at the start
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=None, progress=None
    )
    assert h.layers == ["0: Dense(5, 6)", "2: Dense(6, 4)", "4: Dense(4, 3)"]
    np.testing.assert_allclose(h.grad_norm[0], [np.linalg.norm(g) for g in gW], rtol=1e-10)


def test_grad_norms_show_vanishing_gradients_in_a_deep_sigmoid_net(rng):
    x = rng.standard_normal((128, 16))
    y = rng.integers(0, 2, size=128)
    m = ap.mlp([16] * 8 + [2], activation="sigmoid", seed=0, dtype="float64", backend="numpy")
    h = ap.fit(m, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=32, progress=None)
    norms = h.grad_norm[-1]
    assert len(norms) == 8
    assert norms[0] < 0.01 * norms[-1]  # σ' ≤ 1/4 per layer: the first layer barely learns
    relu = ap.mlp([16] * 8 + [2], seed=0, dtype="float64", backend="numpy")
    h_relu = ap.fit(
        relu, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=32, progress=None
    )
    assert h_relu.grad_norm[-1][0] > 0.1 * h_relu.grad_norm[-1][-1]


# -- other losses ----------------------------------------------------------------------------------


def test_regression_loss_and_metrics(backend):
    x, y, _, _ = ap.data.make_linear_regression(n=50, features=3, seed=0)
    m = ap.mlp([3, 1], seed=5, backend=backend)
    w = backend.to_host(m[0].weight.data)
    b = backend.to_host(m[0].bias.data)
    pred = x.astype(np.float64) @ w + b
    h = ap.fit(
        m,
        x,
        y[:, 0],
        loss="mse",
        optimizer="sgd",
        epochs=1,
        batch_size=None,
        metrics=("mse", "mae"),
        progress=None,
    )
    err = pred - y.astype(np.float64)
    # full batch: the epoch's numbers are those of the initial weights
    assert h.loss[0] == pytest.approx(np.mean(err**2), rel=1e-10)
    assert h.mse[0] == pytest.approx(np.mean(err**2), rel=1e-10)
    assert h.mae[0] == pytest.approx(np.mean(np.abs(err)), rel=1e-10)
    h2 = ap.fit(
        m,
        x,
        y,
        loss="mse",
        optimizer=ap.SGD(m.parameters(), lr=0.05),
        epochs=20,
        batch_size=10,
        progress=None,
    )
    assert "accuracy" not in h2.history  # the default accuracy is dropped for regression
    assert h2.loss[-1] < min(0.05, 0.1 * h.loss[0])  # the noise floor is 0.1² = 0.01


def test_binary_logits_accuracy_threshold(backend):
    x, y = ap.data.make_logistic_regression(n=60, features=4, seed=0)
    m = ap.mlp([4, 1], seed=1, backend=backend)
    z = x.astype(np.float64) @ backend.to_host(m[0].weight.data) + backend.to_host(m[0].bias.data)
    h = ap.fit(
        m,
        x,
        y,
        loss=ap.BinaryCrossEntropy(from_logits=True),
        optimizer="sgd",
        epochs=1,
        batch_size=None,
        progress=None,
    )
    assert h.accuracy[0] == pytest.approx(np.mean((z[:, 0] > 0) == (y == 1)))


# -- bad input -------------------------------------------------------------------------------------


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
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            _fit(model64, x, y, batch_size=bad)
    for bad in (0, -3, 1.0):
        with pytest.raises(ValueError, match="epochs must be a positive int"):
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
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ap.evaluate(model64, x, y, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ap.predict(model64, x, batch_size=-2)


def test_foreign_arrays_are_refused(model64, rng):
    torch = pytest.importorskip("torch")
    x = torch.zeros((4, 64), dtype=torch.float64)
    with pytest.raises(BackendMismatchError, match=r"fit: x: got a torch.Tensor"):
        _fit(model64, x, np.zeros(4, dtype=np.int64))


def test_optimizer_and_loss_by_name(small):
    x, y = small
    m = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    ref = _Ref(m)
    ref.sgd(x, y, lr=0.01, epochs=1, batch=8, shuffle=False, seed=None)  # SGD's default lr
    ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=1,
        batch_size=8,
        shuffle=False,
        progress=None,
    )
    _assert_weights(_weights(m), _ref_weights(ref))
    a = ap.mlp([5, 6, 3], seed=0, dtype="float64", backend="numpy")
    h = ap.fit(a, x, y, loss="softmax-ce", optimizer="adam", epochs=1, metrics=None, progress=None)
    assert h.lr == [0.001]  # Adam's default
    assert "accuracy" not in h.history


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "SFC64", "Philox"])
def test_shuffler_state_survives_json(bit_generator):
    import json

    rng = np.random.Generator(getattr(np.random, bit_generator)(42))
    rng.permutation(10)
    state = json.loads(json.dumps(ap.data.rng_state(rng), allow_nan=False))
    again = ap.data.rng_from_state(state)
    np.testing.assert_array_equal(again.permutation(1000), rng.permutation(1000))


@pytest.mark.parametrize(
    "module", ["training.api", "training.args", "training.feed", "training.loop", "training.resume"]
)
def test_train_module_is_portable(module):
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(f"arrayprop.{module}"))
    for name in ("import numpy", "import torch", "import cupy", "np.", "float(loss"):
        assert name not in source
