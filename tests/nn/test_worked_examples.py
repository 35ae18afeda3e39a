"""The worked examples, with every number derived by hand in the test.

The expected values are computed here with scalar loops over i, j, k and ``math.exp``, from the
textbook formulas (σ' = σ (1 − σ)), never with the library's matrix code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayprop as ap
from helpers import host


def sigma(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# -- (a) the 2-3-2 sigmoid network with L2 loss --------------------------------------------------

# Weights w_ij from input i to hidden unit j, u_jk from hidden unit j to output k.
X = [0.05, 0.10]
W = [[0.15, 0.20, 0.25], [0.30, 0.35, 0.40]]
B = [0.35, 0.30, 0.25]
U = [[0.40, 0.45], [0.50, 0.55], [0.60, 0.65]]
C = [0.60, 0.55]
T = [0.01, 0.99]


def by_hand(x: list[float], t: list[float]) -> dict[str, object]:
    """Forward and backward of the 2-3-2 network for one sample, one scalar at a time."""
    h = [sigma(sum(x[i] * W[i][j] for i in range(2)) + B[j]) for j in range(3)]
    y = [sigma(sum(h[j] * U[j][k] for j in range(3)) + C[k]) for k in range(2)]
    loss = 0.5 * sum((y[k] - t[k]) ** 2 for k in range(2))
    # Output layer: δ_k = (y_k − t_k) y_k (1 − y_k); ∂L/∂u_jk = δ_k h_j; ∂L/∂c_k = δ_k.
    delta = [(y[k] - t[k]) * y[k] * (1 - y[k]) for k in range(2)]
    du = [[delta[k] * h[j] for k in range(2)] for j in range(3)]
    dc = list(delta)
    # Hidden layer: ∂L/∂w_ij = Σ_k δ_k u_jk h_j (1 − h_j) x_i; ∂L/∂b_j = Σ_k δ_k u_jk h_j (1 − h_j).
    back = [sum(delta[k] * U[j][k] for k in range(2)) * h[j] * (1 - h[j]) for j in range(3)]
    dw = [[back[j] * x[i] for j in range(3)] for i in range(2)]
    db = list(back)
    dx = [sum(W[i][j] * back[j] for j in range(3)) for i in range(2)]
    return {"y": y, "loss": loss, "du": du, "dc": dc, "dw": dw, "db": db, "dx": dx}


def network(backend: ap.Backend) -> ap.Sequential:
    return ap.Sequential(
        ap.Dense(2, 3, weight=W, bias=B, backend=backend),
        ap.Sigmoid(),
        ap.Dense(3, 2, weight=U, bias=C, backend=backend),
        ap.Sigmoid(),
    )


def test_2_3_2_sigmoid_network_one_sample(backend):
    model = network(backend)
    loss = ap.L2Loss(reduction="sum")
    y = model.forward(backend.asarray([X]))
    value, grad = loss.value_and_grad(y, [T])
    grad_x = model.backward(grad)
    ref = by_hand(X, T)
    np.testing.assert_allclose(host(backend, y)[0], ref["y"], rtol=1e-14)
    assert float(backend.to_host(value)) == pytest.approx(ref["loss"], rel=1e-13)
    hidden, output = model[0], model[2]
    np.testing.assert_allclose(host(backend, output.weight.grad), ref["du"], rtol=1e-12)
    np.testing.assert_allclose(host(backend, output.bias.grad), ref["dc"], rtol=1e-12)
    np.testing.assert_allclose(host(backend, hidden.weight.grad), ref["dw"], rtol=1e-12)
    np.testing.assert_allclose(host(backend, hidden.bias.grad), ref["db"], rtol=1e-12)
    np.testing.assert_allclose(host(backend, grad_x)[0], ref["dx"], rtol=1e-12)


def test_2_3_2_sigmoid_network_batch_sums_the_per_sample_gradients(backend):
    xs = [X, [0.9, -0.3], [-0.5, 0.2]]
    ts = [T, [0.5, 0.1], [0.8, 0.3]]
    model = network(backend)
    y = model.forward(backend.asarray(xs))
    value, grad = ap.L2Loss(reduction="sum").value_and_grad(y, ts)
    model.backward(grad)
    refs = [by_hand(x, t) for x, t in zip(xs, ts, strict=True)]
    assert float(backend.to_host(value)) == pytest.approx(sum(r["loss"] for r in refs), rel=1e-13)
    for layer, key in ((model[0], "dw"), (model[2], "du")):
        total = np.sum([np.array(r[key]) for r in refs], axis=0)
        np.testing.assert_allclose(host(backend, layer.weight.grad), total, rtol=1e-12)
    for layer, key in ((model[0], "db"), (model[2], "dc")):
        total = np.sum([np.array(r[key]) for r in refs], axis=0)
        np.testing.assert_allclose(host(backend, layer.bias.grad), total, rtol=1e-12)


# -- (b) one SGD step ----------------------------------------------------------------------------


def test_one_sgd_step_of_a_small_sigmoid_network(backend, rng):
    n, n_in, n_hid, n_out, lr = 4, 3, 4, 2, 0.5
    w1, b1 = rng.standard_normal((n_in, n_hid)), rng.standard_normal(n_hid) * 0.1
    w2, b2 = rng.standard_normal((n_hid, n_out)), rng.standard_normal(n_out) * 0.1
    xs, ts = rng.standard_normal((n, n_in)), rng.random((n, n_out))

    # By hand: C = (1/N) Σ_n ½ Σ_k (y_nk − t_nk)², gradients averaged over the batch.
    g_w1, g_b1 = np.zeros((n_in, n_hid)), np.zeros(n_hid)
    g_w2, g_b2 = np.zeros((n_hid, n_out)), np.zeros(n_out)
    cost = 0.0
    for s in range(n):
        h = [sigma(sum(xs[s, i] * w1[i, j] for i in range(n_in)) + b1[j]) for j in range(n_hid)]
        y = [sigma(sum(h[j] * w2[j, k] for j in range(n_hid)) + b2[k]) for k in range(n_out)]
        cost += 0.5 * sum((y[k] - ts[s, k]) ** 2 for k in range(n_out)) / n
        delta = [(y[k] - ts[s, k]) * y[k] * (1 - y[k]) / n for k in range(n_out)]
        for k in range(n_out):
            g_b2[k] += delta[k]
            for j in range(n_hid):
                g_w2[j, k] += delta[k] * h[j]
        for j in range(n_hid):
            back = sum(delta[k] * w2[j, k] for k in range(n_out)) * h[j] * (1 - h[j])
            g_b1[j] += back
            for i in range(n_in):
                g_w1[i, j] += back * xs[s, i]
    expected = [w1 - lr * g_w1, b1 - lr * g_b1, w2 - lr * g_w2, b2 - lr * g_b2]

    model = ap.Sequential(
        ap.Dense(n_in, n_hid, weight=w1, bias=b1, backend=backend),
        ap.Sigmoid(),
        ap.Dense(n_hid, n_out, weight=w2, bias=b2, backend=backend),
        ap.Sigmoid(),
    )
    opt = ap.SGD(model.parameters(), lr=lr)
    value = ap.train_step(model, ap.L2Loss(reduction="mean"), opt, xs, ts)
    assert float(backend.to_host(value)) == pytest.approx(cost, rel=1e-13)
    for p, new in zip(model.parameters(), expected, strict=True):
        np.testing.assert_allclose(host(backend, p.data), new, rtol=1e-12, err_msg=p.name)


# -- symmetry: zero initialisation never breaks it, random initialisation does -------------------


def train(model: ap.Sequential, rng: np.random.Generator, steps: int = 30) -> None:
    x, t = rng.standard_normal((16, 3)), rng.random((16, 2))
    opt = ap.SGD(model.parameters(), lr=2.0)
    for _ in range(steps):
        ap.train_step(model, ap.L2Loss(reduction="mean"), opt, x, t)


def test_zero_initialisation_keeps_hidden_units_identical(backend, rng):
    model = ap.mlp(
        [3, 4, 2], activation="sigmoid", output_activation="sigmoid", init="zeros", backend=backend
    )
    train(model, rng)
    w1, w2 = host(backend, model[0].weight.data), host(backend, model[2].weight.data)
    b1 = host(backend, model[0].bias.data)
    assert np.max(np.abs(w1)) > 1e-3 and np.max(np.abs(w2)) > 1e-3  # training did move them
    # Every hidden unit j sees the same inputs and sends the same weights forward, so each gets
    # the same gradient: the columns of W1 (and entries of b1) stay equal, as do the rows of W2.
    for j in range(1, 4):
        np.testing.assert_allclose(w1[:, j], w1[:, 0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(w2[j, :], w2[0, :], rtol=1e-12, atol=1e-15)
        assert b1[j] == pytest.approx(b1[0], rel=1e-12, abs=1e-15)


def test_random_initialisation_breaks_the_symmetry(backend, rng):
    model = ap.mlp(
        [3, 4, 2], activation="sigmoid", output_activation="sigmoid", seed=5, backend=backend
    )
    train(model, rng)
    w1, w2 = host(backend, model[0].weight.data), host(backend, model[2].weight.data)
    for j in range(4):
        for j2 in range(j + 1, 4):
            assert np.max(np.abs(w1[:, j] - w1[:, j2])) > 1e-3
            assert np.max(np.abs(w2[j, :] - w2[j2, :])) > 1e-3
