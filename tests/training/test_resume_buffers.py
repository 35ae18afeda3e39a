"""A resumed run carries the model's buffers (BatchNorm's running statistics) as well as its
parameters: the model after resume is the uninterrupted one, buffers included, whether the run
stopped between epochs or inside one (a batch whose update was not applied leaves the buffers
as they were before its forward)."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from fitref import interrupting_step


def _model(backend):
    return ap.Sequential(
        ap.Dense(64, 16, seed=0, backend=backend),
        ap.BatchNorm1d(16, backend=backend),
        ap.ReLU(),
        ap.Dense(16, 10, seed=1, backend=backend),
    )


def _fit(m, x, y, *, epochs=3, interrupt_at=None, **kw):
    opt = ap.SGD(m.parameters(), lr=0.05, momentum=0.9)
    if interrupt_at is not None:
        interrupting_step(opt, interrupt_at, before=True)
    return ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=epochs,
        batch_size=16,
        seed=5,
        progress=None,
        **kw,
    )


def _state(m):
    return {k: m.backend.to_host(v).copy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize(
    "stop",
    [{"epochs": 2}, {"interrupt_at": 4 + 2}],  # 4 steps per epoch: mid-epoch 2
    ids=["after-epoch-2", "mid-epoch-2"],
)
def test_resume_restores_the_running_statistics(backend, digits, tmp_path, stop):
    x, y = digits[0][:64], digits[1][:64]
    full = _model(backend)
    _fit(full, x, y)
    path = tmp_path / "ck.npz"
    part = _fit(_model(backend), x, y, checkpoint=path, **stop)
    assert part.interrupted == ("interrupt_at" in stop)
    rest = _model(backend)
    _fit(rest, x, y, checkpoint=path, resume=True)
    want, got = _state(full), _state(rest)
    assert set(want) == set(got) and any("running_mean" in k for k in want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)
