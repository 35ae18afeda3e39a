"""Saturating logits (±1e4) give finite values, finite gradients and the right limits.

Every activation, the fused softmax cross-entropy (whose value is a log-sum-exp) and binary
cross-entropy in both modes, in float32 and float64, on every backend. pytest turns warnings
into errors, so an overflowing ``exp`` anywhere (and its RuntimeWarning) fails these tests.

References are computed here with Python's ``math`` in float64, from the stable forms
(σ(z) = 1 / (1 + e^{-z}) for z ≥ 0 and e^{z} / (1 + e^{z}) otherwise; log-sum-exp shifted by
the maximum), never with arrayprop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayprop as ap

BIG = 1e4
LOGITS = [-BIG, -100.0, -30.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 30.0, 100.0, BIG]


@pytest.fixture(params=["float32", "float64"])
def be(request, backend):
    return backend.with_dtype(request.param)


def _tol(be):
    return 1e-6 if be.dtype_name == "float32" else 1e-14


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _softmax(row) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _ce(row, y: int) -> float:
    """−log softmax(row)_y = (max − row_y) + log Σ e^{row − max}: no cancellation."""
    m = max(row)
    return (m - row[y]) + math.log(sum(math.exp(v - m) for v in row))


def _forward_backward(layer, be, z, g):
    """(output, ∂C/∂input) of ``layer`` for input z and upstream gradient g (host arrays)."""
    layer.backend = be
    out = layer.forward(be.asarray(z))
    grad = layer.backward(be.asarray(g))
    host_out, host_grad = be.to_host(out), be.to_host(grad)
    assert out.dtype == be.dtype and grad.dtype == be.dtype
    assert np.all(np.isfinite(host_out)) and np.all(np.isfinite(host_grad))
    return host_out.astype(np.float64), host_grad.astype(np.float64)


@pytest.mark.parametrize("inplace_kernels", [False, True], ids=["portable", "fast"])
def test_sigmoid_saturates_to_exact_limits_with_finite_gradients(be, inplace_kernels):
    z = np.array([LOGITS])
    g = np.ones_like(z)
    with ap.kernels.use_portable(not inplace_kernels):
        a, dz = _forward_backward(ap.Sigmoid(), be, z, g)
    expected = np.array([[_sigmoid(v) for v in LOGITS]])
    np.testing.assert_allclose(a, expected, rtol=_tol(be), atol=_tol(be) * 1e-3)
    assert a[0, 0] == 0.0 or a[0, 0] < 1e-30  # e^{-1e4} underflows: 0 (or a subnormal)
    assert a[0, -1] == 1.0
    # f'(z) = a (1 − a): 0 at both saturated ends, ¼ at 0.
    np.testing.assert_allclose(dz, expected * (1 - expected), rtol=1e-5, atol=_tol(be))
    assert dz[0, 0] == 0.0 and dz[0, -1] == 0.0


def test_tanh_saturates_to_plus_minus_one_with_zero_gradient(be):
    z = np.array([LOGITS])
    a, dz = _forward_backward(ap.Tanh(), be, z, np.ones_like(z))
    np.testing.assert_allclose(a, np.array([[math.tanh(v) for v in LOGITS]]), rtol=_tol(be))
    assert a[0, 0] == -1.0 and a[0, -1] == 1.0
    assert dz[0, 0] == 0.0 and dz[0, -1] == 0.0


def test_softmax_of_huge_logits_is_one_hot_or_uniform_and_finite(be):
    z = np.array([[BIG, 0.0, -BIG], [BIG, BIG, -BIG], [-BIG, -BIG, -BIG], [0.0, 1.0, 2.0]])
    g = np.array([[1.0, -2.0, 0.5]] * 4)
    a, dz = _forward_backward(ap.Softmax(), be, z, g)
    expected = np.array([_softmax(row) for row in z.tolist()])
    np.testing.assert_allclose(a, expected, rtol=_tol(be), atol=_tol(be) * 1e-3)
    np.testing.assert_array_equal(a[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(a[1], [0.5, 0.5, 0.0], atol=_tol(be))
    # ∂C/∂z = a ⊙ (g − Σ_j g_j a_j)
    ref = expected * (g - (g * expected).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(dz, ref, rtol=1e-5, atol=_tol(be))


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "identity"])
def test_piecewise_linear_activations_pass_huge_values_through(be, kind):
    layer = {"relu": ap.ReLU(), "leaky_relu": ap.LeakyReLU(0.1), "identity": ap.Identity()}[kind]
    z = np.array([LOGITS])
    a, dz = _forward_backward(layer, be, z, np.ones_like(z))
    slope = {"relu": 0.0, "leaky_relu": 0.1, "identity": 1.0}[kind]
    expected = np.where(z > 0, z, slope * z)
    np.testing.assert_allclose(a, expected, rtol=_tol(be))
    np.testing.assert_allclose(dz, np.where(z > 0, 1.0, slope), rtol=_tol(be))


# -- losses on saturated logits ----------------------------------------------------------------


def _value_and_grad(loss, be, pred, target):
    value, grad = loss.value_and_grad(be.asarray(pred), target)
    v, g = float(be.to_host(value)), be.to_host(grad)
    assert grad.dtype == be.dtype
    assert math.isfinite(v) and np.all(np.isfinite(g)), (v, g)
    return v, g.astype(np.float64)


@pytest.mark.parametrize(
    ("row", "label"),
    [
        ([BIG, -BIG, 0.0], 0),  # confidently right: C ≈ 0
        ([BIG, -BIG, 0.0], 2),  # wrong by 1e4: C ≈ 1e4
        ([BIG, -BIG, 0.0], 1),  # wrong by 2e4
        ([-BIG, -BIG, -BIG], 1),  # all equal and hugely negative: C = log 3
        ([BIG, BIG, -BIG], 0),  # a tie at the top: C = log 2
        ([0.5, -0.25, 2.0], 1),  # ordinary logits
    ],
)
def test_softmax_cross_entropy_is_a_stable_log_sum_exp(be, row, label):
    z = np.array([row, row[::-1]])
    labels = np.array([label, len(row) - 1 - label])  # the same case, mirrored
    value, grad = _value_and_grad(ap.SoftmaxCrossEntropy(), be, z, labels)
    # C = mean over rows of lse(z) − z_y (in float64 from the exact logits of this dtype).
    zq = z.astype(be.dtype_name).astype(np.float64)
    expected = np.mean([_ce(r, y) for r, y in zip(zq.tolist(), labels, strict=True)])
    assert value == pytest.approx(expected, rel=_tol(be), abs=_tol(be))
    soft = np.array([_softmax(r) for r in zq.tolist()])
    np.testing.assert_allclose(grad, (soft - np.eye(3)[labels]) / 2, rtol=1e-5, atol=_tol(be))
    assert np.all(np.abs(grad) <= 0.5 + _tol(be))  # |softmax − y| / N never exceeds 1/N


def test_softmax_cross_entropy_limits(be):
    ce = ap.SoftmaxCrossEntropy()
    right, _ = _value_and_grad(ce, be, np.array([[BIG, 0.0]]), np.array([0]))
    wrong, grad = _value_and_grad(ce, be, np.array([[BIG, 0.0]]), np.array([1]))
    assert right == 0.0
    assert wrong == pytest.approx(BIG, rel=_tol(be))
    np.testing.assert_allclose(grad, [[1.0, -1.0]], rtol=_tol(be))


@pytest.mark.parametrize("z", [-BIG, -100.0, -1.0, 0.0, 1.0, 100.0, BIG])
@pytest.mark.parametrize("t", [0.0, 0.25, 1.0])
def test_bce_from_logits_is_stable_with_exact_limits(be, z, t):
    value, grad = _value_and_grad(
        ap.BinaryCrossEntropy(from_logits=True), be, np.array([[z]]), np.array([[t]])
    )
    # C = max(z, 0) − z t + log(1 + e^{−|z|}), ∂C/∂z = σ(z) − t (one element: M = 1).
    expected = max(z, 0.0) - z * t + math.log1p(math.exp(-abs(z)))
    assert value == pytest.approx(expected, rel=_tol(be), abs=_tol(be))
    assert grad[0, 0] == pytest.approx(_sigmoid(z) - t, rel=1e-5, abs=_tol(be))
    if abs(z) == BIG and t in (0.0, 1.0):
        confident_right = (z > 0) == (t == 1.0)
        assert value == (0.0 if confident_right else pytest.approx(BIG, rel=_tol(be)))


@pytest.mark.parametrize("z", [-BIG, -30.0, 0.0, 30.0, BIG])
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_bce_on_saturated_probabilities_is_clipped_to_finite(be, z, t):
    # Probabilities straight out of a saturated sigmoid are exactly 0 or 1: log(0) must not
    # happen. They are clipped to [eps, 1 − eps] with eps the dtype's machine epsilon.
    sig = ap.Sigmoid()
    sig.backend = be
    p = sig.forward(be.asarray(np.array([[z]])))
    value, grad = ap.BinaryCrossEntropy().value_and_grad(p, np.array([[t]]))
    v, g = float(be.to_host(value)), float(be.to_host(grad)[0, 0])
    assert math.isfinite(v) and math.isfinite(g)
    eps = float(np.finfo(be.dtype_name).eps)
    pc = min(max(_sigmoid(z), eps), 1 - eps)
    pc = float(np.asarray(pc, dtype=be.dtype_name))  # the clip happens in the model's dtype
    expected = -(t * math.log(pc) + (1 - t) * math.log1p(-pc))
    assert v == pytest.approx(expected, rel=1e-5, abs=10 * eps)
    assert v <= -math.log(eps) * (1 + 1e-5)  # bounded by the clip: ≈ 36 (f64), ≈ 16 (f32)
    assert g == pytest.approx((pc - t) / (pc * (1 - pc)), rel=1e-4)


def test_a_model_with_saturated_units_still_has_finite_gradients(be):
    # A Sigmoid → Dense → SoftmaxCE stack fed inputs that saturate every unit.
    model = ap.Sequential(
        ap.Dense(2, 3, weight=np.array([[1e3, -1e3, 1.0], [1e3, 1e3, -1.0]]), backend=be),
        ap.Sigmoid(),
        ap.Dense(3, 2, weight=np.array([[1e3, -1e3], [-1e3, 1e3], [1.0, 1.0]]), backend=be),
    )
    x = be.asarray(np.array([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    value, grad = ap.SoftmaxCrossEntropy().value_and_grad(model.forward(x), np.array([1, 0, 1]))
    model.backward(grad)
    assert math.isfinite(float(be.to_host(value)))
    for p in model.parameters():
        assert np.all(np.isfinite(be.to_host(p.grad))), p.name
