"""Randomness policy: one host Generator, so one seed means the same model on every backend.

Weights are drawn on the host (NumPy, float64) and cast once, so the initial weights are
bit-identical everywhere; training in float64 then follows the same trajectory on every backend
up to rounding (compared here with the numpy backend at 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from helpers import host

INITS = ["he", "he_uniform", "glorot", "glorot_uniform", "normal", "zeros"]


def numpy_backend(dtype: str) -> ap.Backend:
    return ap.get_backend("numpy", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_initial_weights_everywhere(backend, dtype):
    be = backend.with_dtype(dtype)
    here = ap.mlp([6, 8, 5, 3], activation="tanh", seed=42, backend=be)
    ref = ap.mlp([6, 8, 5, 3], activation="tanh", seed=42, backend=numpy_backend(dtype))
    for p, q in zip(here.parameters(), ref.parameters(), strict=True):
        got = be.to_host(p.data)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, q.data, err_msg=p.name)  # bit-identical


@pytest.mark.parametrize("init", INITS)
def test_every_initialiser_is_backend_independent(backend, init):
    layer = ap.Dense(7, 4, init=init, seed=np.random.default_rng(9), backend=backend)
    ref = ap.Dense(7, 4, init=init, seed=np.random.default_rng(9), backend=numpy_backend("float64"))
    np.testing.assert_array_equal(backend.to_host(layer.weight.data), ref.weight.data)


def test_the_seed_decides_the_weights(backend):
    a = ap.mlp([4, 5, 2], seed=1, backend=backend)
    b = ap.mlp([4, 5, 2], seed=1, backend=backend)
    c = ap.mlp([4, 5, 2], seed=2, backend=backend)
    wa, wb, wc = (host(backend, m[0].weight.data) for m in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(wa, wc)


def run_training(be: ap.Backend, steps: int = 8) -> tuple[list[float], list[np.ndarray]]:
    """Train a fixed model on fixed host data; return the losses and the final weights."""
    data = np.random.default_rng(123)
    x = data.standard_normal((48, 6))
    labels = data.integers(0, 3, 48)
    model = ap.mlp([6, 10, 8, 3], activation="tanh", seed=11, backend=be)
    opt = ap.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    loss = ap.SoftmaxCrossEntropy()
    values = []
    for step in range(steps):
        rows = slice(16 * (step % 3), 16 * (step % 3) + 16)
        values.append(ap.train_step(model, loss, opt, x[rows], labels[rows]))
    # One host copy at the end: the loop itself never syncs.
    return [float(be.to_host(v)) for v in values], [host(be, p.data) for p in model.parameters()]


def test_same_losses_after_sgd_steps_as_numpy(backend):
    losses, weights = run_training(backend)
    ref_losses, ref_weights = run_training(numpy_backend("float64"))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12, atol=0)
    assert losses[-1] < losses[0]
    for w, r in zip(weights, ref_weights, strict=True):
        np.testing.assert_allclose(w, r, rtol=1e-12, atol=1e-14)


def test_training_twice_on_one_backend_is_bit_identical(backend):
    first, second = run_training(backend, steps=4), run_training(backend, steps=4)
    assert first[0] == second[0]
    for a, b in zip(first[1], second[1], strict=True):
        np.testing.assert_array_equal(a, b)
