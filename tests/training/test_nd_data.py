"""fit, evaluate and predict beyond 2-D data and Dense-only stacks.

x has shape (n, ...): only the model's declared input width (``model.in_features``) is checked,
against x's last axis, and only the declared output width against the targets. The models: a
Sequential starting with a Flatten (which declares no input width), Dense layers applied per
position of (n, 5, 6) data, and a user's Layer subclass (declaring no widths, without the speed
hints). Gradient norms and the divergence culprit name parameters by their dotted names.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.data.adapter import Expect, prepare
from arrayprop.errors import DivergenceError, ShapeError
from arrayprop.training.args import expected_data


def _images(n=48, classes=3, seed=0):
    """x (n, 2, 3, 4) and labels that depend on it (so that a model can learn them)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 3, 4))
    y = (x[:, 0, 0, :2].sum(axis=1) > 0).astype(np.int64) + (x[:, 1, 2, 3] > 1.0)
    return x, np.minimum(y, classes - 1)


def _flatten_model(be):
    return ap.Sequential(
        ap.Flatten(),
        ap.Dense(24, 8, seed=1, backend=be),
        ap.ReLU(),
        ap.Dense(8, 3, seed=2, backend=be),
    )


def _host(be, params):
    return [be.to_host(p.data).copy() for p in params]


# -- (a) a Sequential starting with Flatten, on (n, 2, 3, 4) data with labels ---------------------


def test_flatten_model_trains_like_the_mlp_on_flattened_rows(backend):
    x, y = _images()
    model = _flatten_model(backend)
    assert model.in_features is None and model.out_features == 3
    flat = ap.Sequential(
        ap.Dense(24, 8, seed=1, backend=backend),
        ap.ReLU(),
        ap.Dense(8, 3, seed=2, backend=backend),
    )
    kwargs = dict(loss="softmax-ce", epochs=4, batch_size=8, seed=3, progress=None)
    h = ap.fit(model, x, y, optimizer=ap.SGD(model.parameters(), lr=0.1), **kwargs)
    h_flat = ap.fit(
        flat, x.reshape(48, 24), y, optimizer=ap.SGD(flat.parameters(), lr=0.1), **kwargs
    )
    # The same steps on the same samples: the Flatten changes nothing but the input's shape.
    for mine, theirs in zip(
        _host(backend, model.parameters()), _host(backend, flat.parameters()), strict=True
    ):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.loss, h_flat.loss, rtol=1e-12)
    assert h.loss[-1] < h.loss[0]
    # Gradient norms: the weights, by dotted name (the Flatten and ReLU hold none).
    assert h.layers == ["1.weight", "3.weight"]
    np.testing.assert_allclose(h.grad_norm, h_flat.grad_norm, rtol=1e-10)

    out = ap.predict(model, x, batch_size=5)
    assert isinstance(out, backend.array_type) and tuple(out.shape) == (48, 3)
    logits = backend.to_host(out)
    np.testing.assert_allclose(logits, backend.to_host(flat.predict(x.reshape(48, 24))), rtol=1e-12)
    r = ap.evaluate(model, x, y, loss="softmax-ce", batch_size=7)
    assert r["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == y))
    assert r["loss"] == pytest.approx(h_flat.loss[-1], rel=0.5)  # the same order as training
    # Labels are range-checked against the declared output width (3 classes).
    with pytest.raises(ap.LabelError, match=r"label 3 at index 0 is out of range"):
        ap.evaluate(model, x[:2], np.array([3, 0]))


def test_flatten_model_takes_device_data_and_validation_data(backend):
    x, y = _images()
    model = _flatten_model(backend)
    h = ap.fit(
        model,
        backend.asarray(x),
        backend.asarray(y),
        loss="softmax-ce",
        optimizer="adam",
        epochs=2,
        batch_size=16,
        seed=0,
        validation_data=(x[:10], y[:10]),
        progress=None,
    )
    assert len(h.val_loss) == 2 and all(np.isfinite(h.val_loss))
    assert tuple(ap.predict(model, backend.asarray(x[:7])).shape) == (7, 3)


# -- (b) Dense layers per position: x (n, 5, 6), targets (n, 5, 2) with MSE -----------------------


def _positions(n=20, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5, 6))
    true = rng.standard_normal((6, 2))
    return x, x @ true + 0.01 * rng.standard_normal((n, 5, 2))


def test_dense_per_position_regression_matches_the_flattened_positions(backend):
    x, t = _positions()
    model = ap.mlp([6, 4, 2], "tanh", seed=0, backend=backend)
    rows = ap.mlp([6, 4, 2], "tanh", seed=0, backend=backend)
    kwargs = dict(loss="mse", epochs=5, batch_size=None, progress=None)
    h = ap.fit(model, x, t, optimizer=ap.SGD(model.parameters(), lr=0.05), **kwargs)
    h_rows = ap.fit(
        rows, x.reshape(100, 6), t.reshape(100, 2), optimizer=ap.SGD(rows.parameters(), lr=0.05),
        **kwargs,
    )  # fmt: skip
    # Full batch: the mean over (n, 5, 2) is the mean over (5n, 2), so the steps are equal.
    for mine, theirs in zip(
        _host(backend, model.parameters()), _host(backend, rows.parameters()), strict=True
    ):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-13)
    assert h.loss[-1] < h.loss[0]
    assert "accuracy" not in h.history  # regression: no default accuracy
    np.testing.assert_allclose(h.loss, h_rows.loss, rtol=1e-10)
    out = ap.predict(model, x, batch_size=3)
    assert tuple(out.shape) == (20, 5, 2)
    want = backend.to_host(rows.predict(x.reshape(100, 6))).reshape(20, 5, 2)
    np.testing.assert_allclose(backend.to_host(out), want, rtol=1e-10, atol=1e-13)
    r = ap.evaluate(model, x, t, loss="mse", batch_size=6)
    assert r == {"loss": pytest.approx(np.mean((want - t) ** 2), rel=1e-10)}


def test_per_position_shapes_are_checked_against_the_declared_widths(backend):
    x, t = _positions()
    model = ap.mlp([6, 4, 2], seed=0, backend=backend)
    opt = dict(loss="mse", optimizer="sgd", epochs=1, progress=None)
    with pytest.raises(
        ShapeError,
        match=r"^fit: x has 7 features along its last axis but the model's first layer "
        r"Dense\(6, 4\) expects 6; expected x of shape \(n, \.\.\., 6\), got \(20, 5, 7\)$",
    ):
        ap.fit(model, np.zeros((20, 5, 7)), t, **opt)
    with pytest.raises(
        ShapeError,
        match=r"^fit: y must have shape \(20, \.\.\., 2\) for a model with 2 outputs, got "
        r"\(20, 5, 3\)$",
    ):
        ap.fit(model, x, np.zeros((20, 5, 3)), **opt)
    with pytest.raises(ShapeError, match=r"^predict: x must have shape \(n, 6\), got \(6,\)$"):
        ap.predict(model, np.zeros(6))
    # The last axis of y is the declared width; the rest the loss compares with the output.
    with pytest.raises(ShapeError, match=r"target shape \(20, 4, 2\) does not match prediction"):
        ap.fit(model, x, np.zeros((20, 4, 2)), **opt)


# -- (c) a user's model: a Layer subclass holding two Dense layers ----------------------------


class TwoLayers(ap.Layer):
    """A user's model: no widths declared, no speed hints, its own forward and backward."""

    def __init__(self, be, features=4, hidden=8, classes=3):
        self.hidden = ap.Dense(features, hidden, seed=1, backend=be)
        self.act = ap.Tanh()
        self.out = ap.Dense(hidden, classes, seed=2, backend=be)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.out.forward(self.act.forward(self.hidden.forward(x)))

    def backward(self, grad):
        return self.hidden.backward(self.act.backward(self.out.backward(grad)))


def _blobs(n=60, seed=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 4)) + 2.0 * np.eye(3, 4)[y]
    return x, y


def test_a_users_layer_trains_with_fit_and_records_named_gradient_norms(backend):
    x, y = _blobs()
    onehot = np.eye(3)[y]
    model = TwoLayers(backend)
    stopping = ap.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    assert not model.speed_hints and getattr(model, "in_features", None) is None
    h = ap.fit(
        model, x, onehot, loss="softmax-ce", optimizer=ap.SGD(model.parameters(), lr=0.2),
        epochs=6, batch_size=None, progress=None, callbacks=[stopping],
    )  # fmt: skip
    assert model.calls == 6
    assert stopping.best_epoch == 6  # it kept (and put back) copies of the user model's weights
    assert h.loss[-1] < 0.8 * h.loss[0]
    assert h.accuracy[-1] > 0.7  # one-hot targets: accuracy compares argmaxes
    assert h.layers == ["hidden.weight", "out.weight"]
    # Full batch: the norms are those of the gradients the last (only) step of the epoch left.
    grads = [backend.to_host(model.hidden.weight.grad), backend.to_host(model.out.weight.grad)]
    np.testing.assert_allclose(h.grad_norm[-1], [np.linalg.norm(g) for g in grads], rtol=1e-10)
    out = ap.predict(model, x)
    assert tuple(out.shape) == (60, 3)
    r = ap.evaluate(model, x, onehot, loss="softmax-ce")
    assert r["accuracy"] == pytest.approx(np.mean(backend.to_host(out).argmax(axis=1) == y))
    # train_step takes host data for it too (moved to the model's backend).
    value = ap.train_step(model, ap.SoftmaxCrossEntropy(), ap.SGD(model.parameters()), x, onehot)
    assert np.isfinite(float(backend.to_host(value)))


def test_a_users_layer_without_an_output_width_refuses_class_labels(backend):
    x, y = _blobs()
    model = TwoLayers(backend)
    expect = expected_data(model, None)
    assert (expect.features, expect.outputs, expect.first) == (None, None, "TwoLayers")
    with pytest.raises(
        ShapeError,
        match=r"^fit: y has shape \(60,\) \(class labels\) but the model declares no output "
        r"width .*so labels cannot be checked; pass one-hot or target rows",
    ):
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, progress=None)
    # A model declaring its widths gets the usual checks (and labels).
    model.in_features, model.out_features = 4, 3
    h = ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, progress=None)
    assert len(h) == 1
    with pytest.raises(
        ShapeError,
        match=r"x has 5 features per sample but the model's first layer TwoLayers expects 4",
    ):
        ap.evaluate(model, np.zeros((3, 5)), y[:3])


def test_a_users_layer_with_no_parameters_is_still_refused():
    class Nothing(ap.Layer):
        def forward(self, x):
            return x

        def backward(self, grad):
            return grad

    with pytest.raises(ValueError, match=r"^fit: the model has no parameters"):
        ap.fit(Nothing(), np.zeros((4, 2)), np.zeros((4, 2)), loss="mse", optimizer="sgd", epochs=1)


def test_divergence_of_a_users_layer_names_the_parameter_by_dotted_name(backend):
    x, y = _blobs()
    model = TwoLayers(backend)
    initial = _host(backend, model.parameters())
    with pytest.raises(DivergenceError) as info:
        ap.fit(
            model, x * 1e3, np.eye(3)[y], loss="mse",
            optimizer=ap.SGD(model.parameters(), lr=1e200), epochs=1, batch_size=20, progress=None,
        )  # fmt: skip
    err = info.value
    assert "restored to those of the start of training" in str(err)
    assert isinstance(err.layer, str)
    assert re.fullmatch(r"(hidden|out)\.(weight|bias) of Dense\(\d, \d\)", err.layer), err.layer
    assert f"first parameter with a non-finite gradient at the last step: {err.layer}" in str(err)
    for mine, was in zip(_host(backend, model.parameters()), initial, strict=True):
        np.testing.assert_array_equal(mine, was)


# -- (d) N-D memmap data streamed in chunks ----------------------------------------------------


@pytest.fixture
def images_on_disk(tmp_path):
    x, y = _images(n=64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")


#: Room for about 16 rows of (24 float64 values + a label) per chunk, so 64 rows stream.
SMALL = 3 * 16 * (24 * 8 + 8) + 8 * 64 + 10


def test_streamed_nd_memmap_gives_the_resident_result(backend, images_on_disk):
    x, y = images_on_disk
    d = prepare(
        backend, x, y, expected_data(_flatten_model(backend), None), what="fit", budget=SMALL
    )
    assert not d.resident and d.row_bytes == 24 * 8 + 8 and d.chunk_rows(8) == 16
    shapes = [tuple(xs.shape) for xs, _ in d.chunks(8)]
    assert shapes == [(16, 2, 3, 4)] * 4

    results = []
    for budget in (None, SMALL):
        model = _flatten_model(backend)
        h = ap.fit(
            model, x, y, loss="softmax-ce", optimizer=ap.SGD(model.parameters(), lr=0.1),
            epochs=3, batch_size=8, seed=5, validation_data=(x, y), progress=None,
            max_device_bytes=budget,
        )  # fmt: skip
        results.append(
            (
                _host(backend, model.parameters()),
                h.loss,
                h.val_loss,
                backend.to_host(ap.predict(model, x, batch_size=8, max_device_bytes=budget)),
                ap.evaluate(model, x, y, loss="softmax-ce", batch_size=8, max_device_bytes=budget),
            )
        )
    (w1, l1, v1, p1, e1), (w2, l2, v2, p2, e2) = results
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    np.testing.assert_allclose(p1, p2, rtol=1e-12, atol=1e-14)
    assert e1 == pytest.approx(e2, rel=1e-12)


def test_prepare_takes_nd_targets_and_counts_their_row_bytes(backend, tmp_path):
    x, t = _positions(n=24)
    np.save(tmp_path / "x.npy", x)  # memmaps: host data on every backend
    np.save(tmp_path / "t.npy", t)
    x, t = (np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in ("x", "t"))
    expect = Expect(6, 2, "Dense(6, 2)", "MSE()")
    budget = 3 * 4 * (30 * 8 + 10 * 8) + 8 * 24 + 10  # chunks of 4 rows
    d = prepare(backend, x, t, expect, what="fit", budget=budget)
    assert (d.resident, d.labels, d.row_bytes, d.chunk_rows(2)) == (False, False, 40 * 8, 4)
    seen = [(backend.to_host(xs), backend.to_host(ys)) for xs, ys in d.chunks(2)]
    np.testing.assert_array_equal(np.concatenate([a for a, _ in seen]), x)
    np.testing.assert_array_equal(np.concatenate([b for _, b in seen]), t)
    order = np.random.default_rng(0).permutation(24)
    got = [(backend.to_host(xb), backend.to_host(yb)) for xb, yb in d.batches(3, order)]
    np.testing.assert_array_equal(np.concatenate([a for a, _ in got]), x[order])
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), t[order])
