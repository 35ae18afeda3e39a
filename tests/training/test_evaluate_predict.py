"""evaluate and predict against the NumPy reference: host and device inputs, batching, one-hot
and label targets, and evaluate without a loss.

Chunked evaluate/predict of memmapped data is in tests/data/test_fit_data_placement.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from fitref import Ref


def test_evaluate_and_predict_match_reference(backend, small):
    x, y = small
    m = ap.mlp([5, 6, 3], seed=2, backend=backend)
    logits = Ref(m).forward(x)[-1]
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
