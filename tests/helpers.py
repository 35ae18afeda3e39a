"""Shared test helpers: host copies, placement checks and independent references.

Nothing here calls the code under test to produce an expected value: references are NumPy math
written out here or PyTorch autograd.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

import arrayprop as ap

#: Activation names of arrayprop's elementwise layers, with their layer classes.
ACTIVATION_LAYERS = {
    "identity": ap.Identity,
    "relu": ap.ReLU,
    "leaky_relu": ap.LeakyReLU,
    "sigmoid": ap.Sigmoid,
    "tanh": ap.Tanh,
}

#: Every loss the tests check, by name (two entries for SoftmaxCrossEntropy's target forms).
LOSSES = {
    "l2_sum": lambda: ap.L2Loss("sum"),
    "l2_mean": lambda: ap.L2Loss("mean"),
    "mse": ap.MSE,
    "rmse": ap.RMSE,
    "bce": ap.BinaryCrossEntropy,
    "bce_logits": lambda: ap.BinaryCrossEntropy(from_logits=True),
    "sce_labels": ap.SoftmaxCrossEntropy,
    "sce_onehot": ap.SoftmaxCrossEntropy,
}


def host(be: ap.Backend, x: Any) -> np.ndarray:
    """A float64 (or integer) NumPy copy of a backend array, never a view of it."""
    h = np.array(be.to_host(x), copy=True)
    return h.astype(np.float64) if h.dtype.kind == "f" else h


def assert_on_backend(be: ap.Backend, x: Any, dtype: Any = None, what: str = "array") -> None:
    """``x`` is an array of ``be``'s library (namespace), on its device, of ``dtype``."""
    assert isinstance(x, be.array_type), f"{what}: {type(x)} is not {be.array_type}"
    assert array_api_compat.array_namespace(x) is be.xp, f"{what}: foreign namespace"
    assert array_api_compat.device(x) == be.device, (
        f"{what}: on {array_api_compat.device(x)}, expected {be.device}"
    )
    expected = be.dtype if dtype is None else dtype
    assert x.dtype == expected, f"{what}: dtype {x.dtype}, expected {expected}"


def count_to_host(monkeypatch: Any) -> list:
    """Record the shape of every array ``Backend.to_host`` copies (device→host reads)."""
    calls: list = []
    original = ap.Backend.to_host

    def spy(self, x):
        calls.append(getattr(x, "shape", None))
        return original(self, x)

    monkeypatch.setattr(ap.Backend, "to_host", spy)
    return calls


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max(|b|, tiny): one number for a whole array."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], lo: float = 0.3) -> np.ndarray:
    """Values with |v| in [lo, 2), random signs: no ReLU kink within a finite-difference step."""
    return rng.uniform(lo, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


# -- NumPy references, written elementwise from the textbook definitions ------------------------


def np_activation(kind: str, z: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """f(z) for each element, from the scalar definitions (math module, no array tricks)."""

    def f(v: float) -> float:
        if kind == "identity":
            return v
        if kind == "relu":
            return v if v > 0 else 0.0
        if kind == "leaky_relu":
            return v if v > 0 else alpha * v
        if kind == "sigmoid":
            return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
        if kind == "tanh":
            return math.tanh(v)
        raise ValueError(kind)

    return np.vectorize(f, otypes=[np.float64])(np.asarray(z, dtype=np.float64))


def np_activation_derivative(kind: str, z: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """f'(z) for each element, from the scalar definitions."""

    def d(v: float) -> float:
        if kind == "identity":
            return 1.0
        if kind == "relu":
            return 1.0 if v > 0 else 0.0
        if kind == "leaky_relu":
            return 1.0 if v > 0 else alpha
        if kind == "sigmoid":
            s = 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
            return s * (1.0 - s)
        if kind == "tanh":
            return 1.0 - math.tanh(v) ** 2
        raise ValueError(kind)

    return np.vectorize(d, otypes=[np.float64])(np.asarray(z, dtype=np.float64))


def np_softmax_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax with explicit loops over rows (max-shifted)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    for n in range(z.shape[0]):
        m = max(z[n])
        e = [math.exp(v - m) for v in z[n]]
        s = sum(e)
        out[n] = [v / s for v in e]
    return out


# -- PyTorch references ---------------------------------------------------------------------------


def torch_activation(torch: Any, kind: str, z: Any, alpha: float = 0.0) -> Any:
    """The activation ``kind`` with torch's own functions (an independent reference)."""
    f = torch.nn.functional
    if kind == "identity":
        return z
    if kind == "relu":
        return f.relu(z)
    if kind == "leaky_relu":
        return f.leaky_relu(z, negative_slope=alpha)
    if kind == "sigmoid":
        return torch.sigmoid(z)
    if kind == "tanh":
        return torch.tanh(z)
    if kind == "softmax":
        return torch.softmax(z, dim=1)
    raise ValueError(kind)
