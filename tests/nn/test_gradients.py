"""Gradients: finite-difference checks (gradcheck) and agreement with PyTorch autograd.

Every layer, every loss and 3-hidden-layer models are checked against central differences in
float64 on every backend (relative error < 1e-6). Randomly drawn architectures are compared
with PyTorch autograd, an independent implementation, built from the same host weights: the
forward values and every gradient (weights, biases and the input) agree to 1e-10.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.nn.gradcheck import relative_error
from helpers import ACTIVATION_LAYERS, LOSSES, away_from_zero, host, torch_activation

TOL = 1e-6
KINDS = list(ACTIVATION_LAYERS)


def make_activation(kind: str) -> ap.Layer:
    if kind == "softmax":
        return ap.Softmax()
    return ap.LeakyReLU(0.1) if kind == "leaky_relu" else ACTIVATION_LAYERS[kind]()


def loss_target(name: str, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    if name == "sce_labels":
        return rng.integers(0, k, n)
    if name == "sce_onehot":
        return np.eye(k)[rng.integers(0, k, n)]
    if name in ("bce", "bce_logits"):
        return rng.random((n, k))
    return rng.standard_normal((n, k))


def assert_all_below(errors: dict[str, float], expected_keys: set[str]) -> None:
    assert set(errors) == expected_keys
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, f"relative errors above {TOL}: {bad}"


def assert_away_from_kinks(model: ap.Sequential, x: np.ndarray, be: ap.Backend) -> None:
    """Finite differences are wrong across a ReLU kink: require |Z| > 1e-3 before one."""
    h = x
    for i, layer in enumerate(model.layers):
        if isinstance(layer, ap.Dense):
            h = h @ host(be, layer.weight.data) + host(be, layer.bias.data)
            nxt = model.layers[i + 1] if i + 1 < len(model.layers) else None
            if isinstance(nxt, ap.ReLU | ap.LeakyReLU):
                assert np.min(np.abs(h)) > 1e-3, "test data sits on a kink: change the seed"
                h = np.where(h > 0, h, h * getattr(nxt, "alpha", 0.0))
        elif isinstance(layer, ap.Sigmoid):
            h = 1 / (1 + np.exp(-h))
        elif isinstance(layer, ap.Tanh):
            h = np.tanh(h)
        elif isinstance(layer, ap.Softmax):
            e = np.exp(h - h.max(axis=1, keepdims=True))
            h = e / e.sum(axis=1, keepdims=True)


# -- gradcheck: layers, losses, models -----------------------------------------------------------


@pytest.mark.parametrize("kind", [*KINDS, "softmax"])
def test_gradcheck_activation(backend, kind, rng):
    x = backend.asarray(away_from_zero(rng, (5, 4)))
    assert_all_below(ap.gradcheck(make_activation(kind), x), {"input"})


def test_gradcheck_dense(backend, rng):
    layer = ap.Dense(4, 3, bias=rng.standard_normal(3), seed=1, backend=backend)
    x = backend.asarray(rng.standard_normal((5, 4)))
    assert_all_below(ap.gradcheck(layer, x), {"weight", "bias", "input"})


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradcheck_loss(backend, name, rng):
    pred = rng.uniform(0.1, 0.9, (5, 3)) if name == "bce" else rng.standard_normal((5, 3))
    target = loss_target(name, rng, 5, 3)
    assert_all_below(ap.gradcheck(LOSSES[name](), backend.asarray(pred), target), {"input"})


@pytest.mark.parametrize("kind", [*KINDS, "softmax"])
def test_gradcheck_three_hidden_layers(backend, kind, rng):
    model = ap.mlp([4, 5, 4, 3, 3], activation=kind, seed=7, backend=backend)
    for layer in model:
        if isinstance(layer, ap.Dense):  # non-zero biases exercise ∂C/∂b as well
            layer.bias.data = backend.asarray(rng.standard_normal(layer.out_features) * 0.5)
    x = rng.standard_normal((3, 4))
    assert_away_from_kinks(model, x, backend)
    keys = {p.name for p in model.parameters()} | {"input"}
    assert_all_below(ap.gradcheck(model, backend.asarray(x)), keys)
    labels = rng.integers(0, 3, 3)
    assert_all_below(ap.gradcheck(model, x, labels, loss=ap.SoftmaxCrossEntropy()), keys)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradcheck_model_with_each_loss(backend, name, rng):
    out_act = "sigmoid" if name == "bce" else None
    model = ap.mlp([3, 4, 3], activation="tanh", output_activation=out_act, seed=3, backend=backend)
    x = rng.standard_normal((5, 3))
    target = loss_target(name, rng, 5, 3)
    errors = ap.gradcheck(model, backend.asarray(x), target, loss=LOSSES[name]())
    assert_all_below(errors, {p.name for p in model.parameters()} | {"input"})


def test_gradcheck_runs_in_float64_and_leaves_a_float32_model_alone(backend32, rng):
    model = ap.mlp([3, 4, 2], activation="sigmoid", seed=0, backend=backend32)
    before = [backend32.to_host(p.data).copy() for p in model.parameters()]
    errors = ap.gradcheck(model, backend32.asarray(rng.standard_normal((3, 3))))
    assert max(errors.values()) < TOL  # impossible in float32 with eps = 1e-6
    for p, b in zip(model.parameters(), before, strict=True):
        assert p.data.dtype == backend32.dtype
        np.testing.assert_array_equal(backend32.to_host(p.data), b)


class _WrongSigmoid(ap.Sigmoid):
    """f'(z) = a instead of a (1 − a): gradcheck must notice."""

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> Any:
        a = self._a
        self._a = None
        return grad_out * a

    def to(self, backend: ap.Backend) -> ap.Layer:
        return self


def test_gradcheck_catches_a_wrong_backward(backend, rng):
    errors = ap.gradcheck(_WrongSigmoid(), backend.asarray(rng.standard_normal((3, 4))))
    assert errors["input"] > 0.1


def test_relative_error():
    a = np.array([1.0, 2.0, 2.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(a, -a) == pytest.approx(1.0)
    assert relative_error(a, a * (1 + 1e-8)) == pytest.approx(0.5e-8, rel=1e-6)


# -- agreement with PyTorch autograd on randomly drawn architectures -----------------------------


def draw_case(rng: np.random.Generator, loss: str) -> dict[str, Any]:
    """An architecture, activations, batch size, weights and data for ``loss``, drawn from rng."""
    n_hidden = int(rng.integers(0, 4))
    n_out = int(rng.integers(2, 6)) if loss.startswith("sce") else int(rng.integers(1, 6))
    sizes = [int(rng.integers(1, 9)) for _ in range(n_hidden + 1)] + [n_out]
    hidden = [str(rng.choice(KINDS)) for _ in range(n_hidden)]
    if loss == "bce":
        out_act = "sigmoid"
    elif loss in ("l2_sum", "l2_mean", "mse", "rmse"):
        out_act = rng.choice([None, "tanh", "sigmoid"] + (["softmax"] if n_out > 1 else []))
    else:
        out_act = None
    batch = int(rng.integers(1, 10))
    weights = [
        (rng.standard_normal((a, b)) / np.sqrt(a), rng.standard_normal(b) * 0.3)
        for a, b in itertools.pairwise(sizes)
    ]
    return {
        "sizes": sizes,
        "hidden": hidden,
        "alpha": float(rng.uniform(0.01, 0.3)),
        "out_act": out_act,
        "loss": loss,
        "batch": batch,
        "weights": weights,
        "x": rng.standard_normal((batch, sizes[0])),
        "target": loss_target(loss, rng, batch, n_out),
    }


_MASTER = np.random.default_rng(20260522)
CASES = [draw_case(_MASTER, loss) for loss in list(LOSSES) * 2]  # every loss twice


def case_id(case: dict[str, Any]) -> str:
    acts = ",".join(case["hidden"]) or "linear"
    sizes = "x".join(map(str, case["sizes"]))
    return f"{sizes}-{acts}-{case['out_act']}-{case['loss']}-b{case['batch']}"


def torch_reference(case: dict[str, Any]) -> dict[str, np.ndarray]:
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    t64 = torch.float64
    params = [
        (
            torch.tensor(w, dtype=t64, requires_grad=True),
            torch.tensor(b, dtype=t64, requires_grad=True),
        )
        for w, b in case["weights"]
    ]
    x = torch.tensor(case["x"], dtype=t64, requires_grad=True)
    h = x
    kinds = [*case["hidden"], case["out_act"]]
    for (w, b), kind in zip(params, kinds, strict=True):
        h = h @ w + b
        if kind is not None:
            h = torch_activation(torch, kind, h, case["alpha"])
    t = torch.tensor(case["target"])
    name = case["loss"]
    if name == "l2_sum":
        c = 0.5 * ((h - t) ** 2).sum()
    elif name == "l2_mean":
        c = 0.5 * ((h - t) ** 2).sum() / h.shape[0]
    elif name == "mse":
        c = f.mse_loss(h, t)
    elif name == "rmse":
        c = torch.sqrt(f.mse_loss(h, t))
    elif name == "bce":
        c = f.binary_cross_entropy(h, t)
    elif name == "bce_logits":
        c = f.binary_cross_entropy_with_logits(h, t)
    else:  # labels (int64) or one-hot class probabilities (float64)
        c = f.cross_entropy(h, t)
    c.backward()
    out = {"output": h.detach().numpy(), "loss": c.detach().numpy(), "input": x.grad.numpy()}
    for i, (w, b) in enumerate(params):
        out[f"{2 * i}.weight"] = w.grad.numpy()
        out[f"{2 * i}.bias"] = b.grad.numpy()
    return out


def arrayprop_result(case: dict[str, Any], be: ap.Backend) -> dict[str, np.ndarray]:
    layers: list[ap.Layer] = []
    kinds = [*case["hidden"], case["out_act"]]
    for (w, b), kind in zip(case["weights"], kinds, strict=True):
        layers.append(ap.Dense(w.shape[0], w.shape[1], weight=w, bias=b, backend=be))
        if kind is not None:
            layer = ap.LeakyReLU(case["alpha"]) if kind == "leaky_relu" else make_activation(kind)
            layers.append(layer)
    model = ap.Sequential(*layers)
    out = model.forward(be.asarray(case["x"]))
    value, grad = LOSSES[case["loss"]]().value_and_grad(out, case["target"])
    grad_x = model.backward(grad)
    result = {"output": host(be, out), "loss": host(be, value), "input": host(be, grad_x)}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, ap.Dense):
            # Name by Dense index (0, 1, ...) as the torch side does, whatever sits between.
            j = 2 * sum(isinstance(prev, ap.Dense) for prev in model.layers[:i])
            result[f"{j}.weight"] = host(be, layer.weight.grad)
            result[f"{j}.bias"] = host(be, layer.bias.grad)
    return result


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_agrees_with_torch_autograd(backend, case):
    expected = torch_reference(case)
    got = arrayprop_result(case, backend)
    assert set(got) == set(expected)
    for key, ref in expected.items():
        scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
        np.testing.assert_allclose(
            got[key], ref, rtol=1e-10, atol=1e-12 * scale, err_msg=f"{key} of {case_id(case)}"
        )


def test_the_drawn_cases_cover_every_activation_and_loss():
    hidden = {k for c in CASES for k in c["hidden"]}
    assert hidden == set(KINDS)
    assert {c["loss"] for c in CASES} == set(LOSSES)
    assert {c["out_act"] for c in CASES} >= {None, "sigmoid", "softmax"}
    assert len({c["batch"] for c in CASES}) > 3
