"""Data too large for the model's dtype: fit / evaluate / predict refuse it up front.

float64 data cast to a float32 model turns every |value| > 3.4028235e38 into ±inf; without
the check, training then ends in a DivergenceError that blames the learning rate. The check
runs once, with the NaN/inf check (a NonFiniteError naming the array, the value, the model's
dtype), and costs nothing where the data already has the model's dtype. Values inside the
range (1e38) are trained on as they are: the results are compared with NumPy math here.
The layer-level entry points (``Backend.asarray`` of host data, ``Sequential.predict``,
``train_step``, exact Dense weights) refuse the same values when they cast.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import NonFiniteError
from helpers import count_to_host

BACKENDS = ["numpy", "torch", "array_api_strict"]


def _backend(name, dtype="float32"):
    if name == "torch":
        pytest.importorskip("torch")
    return ap.get_backend(name, dtype=dtype)


def _model(be, w=None):
    """One Dense(3, 2) layer with known weights: logits = x W + b."""
    if w is None:
        w = np.array([[0.5, -1.0], [0.5, -0.25], [1.0, 2.0]])
    return ap.Sequential(ap.Dense(3, 2, weight=w, bias=[0.1, -0.2], backend=be))


def _data(big):
    x = np.linspace(-1.0, 1.0, 24).reshape(8, 3)
    x[2, 1] = big
    return x, np.arange(8) % 2


def _place(be, x, placement, tmp_path):
    if placement == "memmap":  # host data that stays on the host (chunked), on every backend
        m = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", x.dtype, x.shape)
        m[:] = x
        m.flush()
        return np.load(tmp_path / "x.npy", mmap_mode="r")
    if placement == "device":  # an array of the backend, keeping its float64
        return be.asarray(x, dtype=be.xp.float64)
    return x


def _call(fn, model, x, y, **kw):
    if fn == "fit":
        return ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1,
                      batch_size=None, progress=None, **kw)  # fmt: skip
    if fn == "evaluate":
        return ap.evaluate(model, x, y, loss="softmax-ce", **kw)
    return ap.predict(model, x, **kw)


@pytest.mark.parametrize("fn", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("placement", ["host", "memmap", "device"])
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("big", [1e39, -1e39])
def test_x_beyond_float32_is_refused(name, placement, fn, big, tmp_path):
    be = _backend(name)
    if placement == "device" and name == "numpy":
        pytest.skip("a NumPy array is already the numpy backend's device array ('host')")
    model = _model(be)
    before = be.to_host(model.layers[0].weight.data).copy()
    x, y = _data(big)
    x = _place(be, x, placement, tmp_path)
    sign = "-" if big < 0 else ""
    with pytest.raises(NonFiniteError) as info:
        _call(fn, model, x, y)
    msg = str(info.value)
    assert msg.startswith(f"{fn}: x contains {sign}1e+39 at index (2, 1), whose magnitude 1e+39")
    assert "exceeds 3.4028235e+38" in msg  # np.finfo(np.float32).max, 8 digits
    assert f"the model's dtype float32: the cast to float32 would make it {sign}inf" in msg
    assert "Scale the data" in msg and "float64 model" in msg
    np.testing.assert_array_equal(be.to_host(model.layers[0].weight.data), before)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("placement", ["host", "x on device", "device"])
@pytest.mark.parametrize("fn", ["fit", "evaluate"])
def test_y_beyond_float32_is_refused(name, placement, fn):
    be = _backend(name)
    if placement != "host" and name == "numpy":
        pytest.skip("NumPy arrays are the numpy backend's device arrays ('host')")
    x = np.linspace(-1.0, 1.0, 24).reshape(8, 3)
    y = np.linspace(0.0, 1.0, 16).reshape(8, 2)
    y[5, 0] = 1e39
    if placement != "host":
        x = be.asarray(x)
    if placement == "device":
        y = be.asarray(y, dtype=be.xp.float64)
    model = _model(be)
    kw = {"loss": "mse", "metrics": None}
    call = {
        "fit": lambda: ap.fit(model, x, y, optimizer="sgd", epochs=1, progress=None, **kw),
        "evaluate": lambda: ap.evaluate(model, x, y, **kw),
    }[fn]
    with pytest.raises(NonFiniteError, match=rf"^{fn}: y contains 1e\+39 at index \(5, 0\), "):
        call()


def test_validation_data_beyond_float32_is_refused():
    be = _backend("numpy")
    x, y = _data(0.5)
    xv, yv = _data(1e39)
    with pytest.raises(NonFiniteError, match=r"^validation_data: x contains 1e\+39 at index"):
        ap.fit(_model(be), x, y, loss="softmax-ce", optimizer="sgd", epochs=1, progress=None,
               validation_data=(xv, yv))  # fmt: skip


def _reference(x, y, w, b):
    """Logits and mean softmax-CE of Dense(3, 2) in float64, on the float32-rounded inputs."""
    x, w, b = (np.asarray(a, dtype=np.float32).astype(np.float64) for a in (x, w, b))
    z = x @ w + b
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return z, -logp[np.arange(len(y)), y].mean(), logp


@pytest.mark.parametrize("placement", ["host", "memmap", "device"])
@pytest.mark.parametrize("name", BACKENDS)
def test_1e38_is_inside_float32_and_used_as_is(name, placement, tmp_path):
    be = _backend(name)
    if placement == "device" and name == "numpy":
        pytest.skip("a NumPy array is already the numpy backend's device array ('host')")
    host_x, y = _data(1e38)
    x = _place(be, host_x, placement, tmp_path)
    w = np.array([[0.5, -1.0], [0.5, -0.25], [1.0, 2.0]])
    b = np.array([0.1, -0.2])
    z, loss, logp = _reference(host_x, y, w, b)
    assert abs(z[2, 0]) > 1e37  # the big value reaches the logits

    out = be.to_host(ap.predict(_model(be), x))
    np.testing.assert_allclose(out, z, rtol=1e-6, atol=1e-6)

    scores = ap.evaluate(_model(be), x, y, loss="softmax-ce")
    np.testing.assert_allclose(scores["loss"], loss, rtol=1e-5)
    assert scores["accuracy"] == np.mean(z.argmax(axis=1) == y)

    # One full-batch SGD step: W ← W − η Xᵀ δ with δ = (softmax − one-hot) / n (row 1 of W gets
    # about 1e38 / 8 · η and stays finite).
    model = _model(be)
    h = ap.fit(model, x, y, loss="softmax-ce", optimizer=ap.SGD(model.parameters(), lr=0.01),
               epochs=1, batch_size=None, progress=None)  # fmt: skip
    np.testing.assert_allclose(h.loss[0], loss, rtol=1e-5)
    delta = np.exp(logp)
    delta[np.arange(8), y] -= 1.0
    delta /= 8
    x64 = host_x.astype(np.float32).astype(np.float64)
    want = w.astype(np.float32).astype(np.float64) - 0.01 * (x64.T @ delta)
    np.testing.assert_allclose(be.to_host(model.layers[0].weight.data), want, rtol=1e-5)


@pytest.mark.parametrize("name", ["numpy", "torch"])
@pytest.mark.parametrize("fn", ["fit", "predict"])
def test_integers_beyond_float16_are_refused(name, fn):
    """int32 data into a float16 model: 70000 > 65504 would become inf, 65504 is exact."""
    be = _backend(name, "float16")
    w = np.full((3, 2), 2.0**-16)
    x = np.arange(24, dtype=np.int32).reshape(8, 3)
    y = np.arange(8) % 2
    for placement in ("host", "device"):
        x[3, 2] = 70000
        given = x if placement == "host" else be.asarray(x)
        with pytest.raises(NonFiniteError, match=r"x contains 70000 at index \(3, 2\), whose "
                           r"magnitude 70000 exceeds 65504, the largest value of the model's "
                           r"dtype float16"):  # fmt: skip
            _call(fn, _model(be, w), given, y)
        x[3, 2] = 65504
        given = x if placement == "host" else be.asarray(x)
        if fn == "predict":
            out = be.to_host(ap.predict(_model(be, w), given)).astype(np.float64)
            z = x.astype(np.float64) @ w + np.array([0.1, -0.2], dtype=np.float16)
            np.testing.assert_allclose(out, z, rtol=2e-3, atol=2e-3)
        else:
            _call(fn, _model(be, w), given, y)


# -- what the check costs --------------------------------------------------------------------------


def test_device_data_is_checked_with_one_read_up_front(monkeypatch):
    be = _backend("torch")
    x, y = _data(0.5)
    x64 = be.asarray(x, dtype=be.xp.float64)
    calls = count_to_host(monkeypatch)
    ap.fit(_model(be), x64, be.asarray(y), loss="softmax-ce", optimizer="sgd", epochs=3,
           batch_size=2, progress=None)  # fmt: skip
    assert len(calls) == 1 + 3  # the up-front check (range included), then one per epoch
    calls.clear()
    ap.predict(_model(be), be.asarray(x))  # float32 data: nothing to check, no read
    assert calls == []
    ap.predict(_model(be), x64)  # float64 data: one read, for the range
    assert len(calls) == 1


def _spy_cast_limit(monkeypatch):
    """Record (largest value of the data's dtype, bound looked for) of every check_finite call:
    each one decides through validation.cast_limit whether to look for values beyond the model's
    dtype (the bound is None when it need not)."""
    from arrayprop import validation

    calls = []
    original = validation.cast_limit

    def spy(source_max, cast_to):
        calls.append((source_max, original(source_max, cast_to)))
        return calls[-1][1]

    monkeypatch.setattr(validation, "cast_limit", spy)
    return calls


def test_host_data_of_the_models_dtype_gets_no_range_scan(monkeypatch):
    """float32 host data for a float32 model: only the NaN/inf scan, as before the range check;
    float64 data: the range is looked for in that same scan."""
    be = _backend("torch")
    x, y = _data(0.5)
    models = [_model(be), _model(be)]  # (their float64 weights are range-checked too)
    limits = _spy_cast_limit(monkeypatch)
    fit = {"loss": "softmax-ce", "optimizer": "sgd", "epochs": 1, "progress": None}
    f32 = float(np.finfo(np.float32).max)
    ap.fit(models[0], x.astype(np.float32), y, **fit)
    assert limits == [(f32, None)]  # labels go through check_class_labels instead
    limits.clear()
    ap.fit(models[1], x, y, **fit)
    assert limits == [(float(np.finfo(np.float64).max), f32)]


# -- the layer-level API: Backend.asarray, Sequential.predict, train_step ----------------------


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("entry", ["asarray", "model.predict", "train_step", "Dense weight"])
def test_layer_level_entry_points_refuse_host_values_beyond_float32(name, entry):
    be = _backend(name)
    x, y = _data(-1e39)
    if entry == "asarray":
        call = lambda: be.asarray(x, what="my x")  # noqa: E731
        label = "my x"
    elif entry == "model.predict":
        call, label = (lambda: _model(be).predict(x)), "predict: x"
    elif entry == "train_step":
        model = _model(be)
        opt = ap.SGD(model.parameters(), lr=0.1)
        call = lambda: ap.train_step(model, ap.SoftmaxCrossEntropy(), opt, x, y)  # noqa: E731
        label = "train_step: x"
    else:
        w = np.array([[0.5, -1.0], [2e39, -0.25], [1.0, 2.0]])
        call, label = (lambda: _model(be, w)), r"Dense\(3, 2\): weight"
    with pytest.raises(NonFiniteError, match=rf"{label}.*-?[12]e\+39.*float32.*-?inf"):
        call()


@pytest.mark.parametrize("name", BACKENDS)
def test_asarray_keeps_values_inside_float32_and_the_datas_own_inf(name):
    be = _backend(name)
    x = np.array([[1e38, -3e38, np.inf], [-np.inf, np.nan, 0.5]])
    got = be.to_host(be.asarray(x))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float32))  # NaN == NaN here
    assert np.isnan(got[1, 1]) and np.isposinf(got[0, 2])


def test_asarray_scans_only_when_the_cast_narrows(monkeypatch):
    scans = _spy_cast_limit(monkeypatch)
    be32 = _backend("numpy")
    be64 = _backend("numpy", "float64")
    be32.asarray(np.ones((2, 2), np.float32))
    be64.asarray(np.ones((2, 2)))
    be64.asarray(np.ones((2, 2), np.float32))  # widening
    be32.asarray(np.ones((2, 2)), check_range=False)
    assert scans == []
    be32.asarray(np.ones((2, 2)), what="x")
    assert scans == [(float(np.finfo(np.float64).max), float(np.finfo(np.float32).max))]
