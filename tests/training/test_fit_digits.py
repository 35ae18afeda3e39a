"""fit on the bundled digits: high test accuracy on NumPy, the same numbers on every backend.

Also checks that History's validation numbers are those evaluate and predict give.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from fitref import assert_weights, model_weights


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
        return model_weights(m), h

    w, h = run(backend)
    w_np, h_np = run(ap.get_backend("numpy", dtype="float64"))
    assert_weights(w, w_np, rtol=1e-9)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(getattr(h, key), getattr(h_np, key), rtol=1e-9)
    np.testing.assert_allclose(h.grad_norm, h_np.grad_norm, rtol=1e-9)
