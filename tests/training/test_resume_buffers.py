"""A resumed run carries the model's buffers (BatchNorm's running statistics) as well as its
parameters: the model after resume is the uninterrupted one, buffers included."""

from __future__ import annotations

import numpy as np

import arrayprop as ap
from fitref import interrupting_step


def _model(backend):
    return ap.Sequential(
        ap.Dense(64, 16, seed=0, backend=backend),
        ap.BatchNorm1d(16, backend=backend),
        ap.ReLU(),
        ap.Dense(16, 10, seed=1, backend=backend),
    )


def _fit(m, x, y, **kw):
    opt = ap.SGD(m.parameters(), lr=0.05, momentum=0.9)
    return ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=3,
        batch_size=16,
        seed=5,
        progress=None,
        **kw,
    ), opt


def _state(m):
    return {k: m.backend.to_host(v).copy() for k, v in m.state_dict().items()}


def test_resume_after_complete_epochs_restores_the_running_statistics(backend, digits, tmp_path):
    x, y = digits[0][:64], digits[1][:64]
    full = _model(backend)
    _fit(full, x, y)
    path = tmp_path / "ck.npz"
    part = _model(backend)
    opt = ap.SGD(part.parameters(), lr=0.05, momentum=0.9)
    ap.fit(
        part,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=2,
        batch_size=16,
        seed=5,
        progress=None,
        checkpoint=path,
    )
    rest = _model(backend)
    _fit(rest, x, y, checkpoint=path, resume=True)
    want, got = _state(full), _state(rest)
    assert set(want) == set(got) and any("running_mean" in k for k in want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_resume_mid_epoch_restores_the_running_statistics(backend, digits, tmp_path):
    x, y = digits[0][:64], digits[1][:64]
    full = _model(backend)
    _fit(full, x, y)
    path = tmp_path / "ck.npz"
    part = _model(backend)
    opt = ap.SGD(part.parameters(), lr=0.05, momentum=0.9)
    interrupting_step(opt, 4 + 2, before=True)  # mid-epoch 2
    h = ap.fit(
        part,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=3,
        batch_size=16,
        seed=5,
        progress=None,
        checkpoint=path,
    )
    assert h.interrupted
    rest = _model(backend)
    _fit(rest, x, y, checkpoint=path, resume=True)
    want, got = _state(full), _state(rest)
    assert set(want) == set(got) and any("running_mean" in k for k in want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)
