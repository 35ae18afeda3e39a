"""Losses: values and gradients against NumPy math written here, placement, numerics, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import DTypeError, LabelError, ShapeError
from arrayprop.validation import check_class_labels
from helpers import LOSSES, assert_on_backend, host, np_softmax_rows


def loss_inputs(name: str, rng: np.random.Generator, n: int = 5, k: int = 3):
    """(pred, target) host arrays suited to the loss ``name``."""
    if name == "bce":
        return rng.uniform(0.05, 0.95, (n, k)), rng.random((n, k))
    if name == "bce_logits":
        return rng.standard_normal((n, k)), rng.random((n, k))
    if name == "sce_labels":
        return rng.standard_normal((n, k)), rng.integers(0, k, n)
    if name == "sce_onehot":
        return rng.standard_normal((n, k)), np.eye(k)[rng.integers(0, k, n)]
    return rng.standard_normal((n, k)), rng.standard_normal((n, k))


# -- placement: the value is a 0-d array of the backend, never a host scalar --------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_value_and_gradient_live_on_the_backend(backend, name, dtype, rng):
    be = backend.with_dtype(dtype)
    pred, target = loss_inputs(name, rng)
    value, grad = LOSSES[name]().value_and_grad(be.asarray(pred), target)
    assert_on_backend(be, value, what=f"{name} value")
    assert value.shape == ()
    assert_on_backend(be, grad, what=f"{name} gradient")
    assert tuple(grad.shape) == pred.shape


# -- values and gradients against NumPy math written here ---------------------------------------


def reference(name: str, y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """(C, ∂C/∂y) from the definitions, one element at a time."""
    n, k = y.shape
    m = n * k
    grad = np.zeros_like(y)
    c = 0.0
    if name in ("l2_sum", "l2_mean", "mse", "rmse"):
        for i in range(n):
            for j in range(k):
                c += (y[i, j] - t[i, j]) ** 2
                grad[i, j] = y[i, j] - t[i, j]
        if name == "l2_sum":
            return 0.5 * c, grad
        if name == "l2_mean":
            return 0.5 * c / n, grad / n
        if name == "mse":
            return c / m, 2 * grad / m
        return math.sqrt(c / m), grad / (m * math.sqrt(c / m))
    if name in ("bce", "bce_logits"):
        for i in range(n):
            for j in range(k):
                p = 1 / (1 + math.exp(-y[i, j])) if name == "bce_logits" else y[i, j]
                c -= t[i, j] * math.log(p) + (1 - t[i, j]) * math.log(1 - p)
                if name == "bce_logits":
                    grad[i, j] = (p - t[i, j]) / m
                else:
                    grad[i, j] = (p - t[i, j]) / (p * (1 - p) * m)
        return c / m, grad
    onehot = t if t.ndim == 2 else np.eye(k)[t]
    for i in range(n):
        lse = math.log(sum(math.exp(v) for v in y[i]))
        for j in range(k):
            c -= onehot[i, j] * (y[i, j] - lse)
            grad[i, j] = (math.exp(y[i, j] - lse) - onehot[i, j]) / n
    return c / n, grad


@pytest.mark.parametrize("name", list(LOSSES))
def test_value_and_gradient_match_the_definition(backend, name, rng):
    pred, target = loss_inputs(name, rng)
    loss = LOSSES[name]()
    value, grad = loss.value_and_grad(backend.asarray(pred), target)
    c, g = reference(name, pred, target)
    assert float(backend.to_host(value)) == pytest.approx(c, rel=1e-13)
    np.testing.assert_allclose(host(backend, grad), g, rtol=1e-12, atol=1e-16)
    # __call__ then backward() gives the same pair; backward releases the gradient.
    assert float(backend.to_host(loss(backend.asarray(pred), target))) == pytest.approx(c)
    np.testing.assert_allclose(host(backend, loss.backward()), g, rtol=1e-12, atol=1e-16)
    with pytest.raises(RuntimeError, match="backward called before the loss was evaluated"):
        loss.backward()


def test_targets_on_the_backend_and_on_the_host_agree(backend, rng):
    logits = backend.asarray(rng.standard_normal((6, 4)))
    labels = rng.integers(0, 4, 6)
    sce = ap.SoftmaxCrossEntropy()
    v_host, g_host = sce.value_and_grad(logits, labels)
    v_dev, g_dev = sce.value_and_grad(logits, backend.asarray(labels))
    v_hot, g_hot = sce.value_and_grad(logits, np.eye(4)[labels].astype(np.int64))
    for v, g in ((v_dev, g_dev), (v_hot, g_hot)):
        assert float(backend.to_host(v)) == float(backend.to_host(v_host))
        np.testing.assert_array_equal(host(backend, g), host(backend, g_host))
    pred = rng.random((5, 3))
    target = rng.random((5, 3))
    a = ap.MSE().value_and_grad(backend.asarray(pred), target)[0]
    b = ap.MSE().value_and_grad(backend.asarray(pred), backend.asarray(target))[0]
    assert float(backend.to_host(a)) == float(backend.to_host(b))


def test_a_column_of_predictions_takes_a_flat_target(backend, rng):
    pred, target = rng.random((5, 1)), rng.random(5)
    value, grad = ap.BinaryCrossEntropy().value_and_grad(backend.asarray(pred), target)
    c, g = reference("bce", pred, target[:, None])
    assert float(backend.to_host(value)) == pytest.approx(c, rel=1e-13)
    np.testing.assert_allclose(host(backend, grad), g, rtol=1e-12)


def test_bce_on_logits_is_bce_on_their_sigmoid(backend, rng):
    z, t = rng.standard_normal((4, 3)), rng.random((4, 3))
    p = 1 / (1 + np.exp(-z))
    v_logit, g_logit = ap.BinaryCrossEntropy(from_logits=True).value_and_grad(backend.asarray(z), t)
    v_prob, g_prob = ap.BinaryCrossEntropy().value_and_grad(backend.asarray(p), t)
    assert float(backend.to_host(v_logit)) == pytest.approx(float(backend.to_host(v_prob)))
    # Chain rule through σ: ∂C/∂z = ∂C/∂p · p (1 − p).
    np.testing.assert_allclose(host(backend, g_logit), host(backend, g_prob) * p * (1 - p))


def test_softmax_cross_entropy_gradient_is_softmax_minus_targets_over_n(backend, rng):
    z = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    _, grad = ap.SoftmaxCrossEntropy().value_and_grad(backend.asarray(z), labels)
    np.testing.assert_allclose(host(backend, grad), (np_softmax_rows(z) - np.eye(4)[labels]) / 5)
    np.testing.assert_allclose(host(backend, grad).sum(axis=1), 0.0, atol=1e-16)


# -- numerics in float32 ------------------------------------------------------------------------


def test_cross_entropies_stay_finite_for_extreme_logits_in_float32(backend32):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 50.0]])
    t = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    value, grad = ap.BinaryCrossEntropy(from_logits=True).value_and_grad(backend32.asarray(z), t)
    v = float(backend32.to_host(value))
    # Confident and right costs 0, confident and wrong costs |z|: (log 2 + 1e4 + 1e4 + 50) / 6.
    assert v == pytest.approx((math.log(2) + 2e4 + 50) / 6, rel=1e-6)
    g = backend32.to_host(grad)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0, 0, -0.5 / 6], [-1 / 6, 1 / 6, 1 / 6]], atol=1e-7)

    value, grad = ap.SoftmaxCrossEntropy().value_and_grad(backend32.asarray(z), np.array([0, 0]))
    assert float(backend32.to_host(value)) == pytest.approx(2e4 / 2, rel=1e-6)
    g = backend32.to_host(grad)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)


def test_bce_clips_probabilities_of_exactly_zero_and_one(backend32):
    p = np.array([[0.0, 1.0, 0.0, 1.0]])
    t = np.array([[0.0, 1.0, 1.0, 0.0]])
    value, grad = ap.BinaryCrossEntropy().value_and_grad(backend32.asarray(p), t)
    v, g = float(backend32.to_host(value)), backend32.to_host(grad)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    eps = float(np.finfo(np.float32).eps)
    assert v == pytest.approx(-2 * math.log(eps) / 4, rel=1e-3)  # two wrong, two right
    assert g[0, 2] < 0 < g[0, 3]


# -- errors --------------------------------------------------------------------------------------


def test_softmax_cross_entropy_rejects_float_and_boolean_labels(backend):
    logits = backend.asarray(np.zeros((3, 4)))
    with pytest.raises(LabelError, match=r"labels of shape \(3,\) must be integers, got"):
        ap.SoftmaxCrossEntropy().value_and_grad(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(LabelError, match="must be integers"):
        ap.SoftmaxCrossEntropy().value_and_grad(logits, np.array([True, False, True]))


@pytest.mark.parametrize("bad", [4, -1, 17])
def test_softmax_cross_entropy_rejects_labels_out_of_range(backend, bad):
    if not backend.on_host:
        pytest.skip("on a GPU the per-step label check would cost a device sync (fit checks)")
    logits = backend.asarray(np.zeros((3, 4)))
    expected = (
        f"SoftmaxCrossEntropy(): label {bad} at index 1 is out of range for a model with 4 "
        "outputs (valid: 0..3)"
    )
    with pytest.raises(LabelError) as info:
        ap.SoftmaxCrossEntropy().value_and_grad(logits, np.array([0, bad, 2]))
    assert str(info.value) == expected


def test_check_labels_on_the_host():
    check_class_labels(np.array([0, 9, 3]), 10, "y")
    check_class_labels(np.array([], dtype=np.int64), 2, "y")
    with pytest.raises(
        LabelError, match="y: label 10 at index 1 is out of range for a model with 10"
    ):
        check_class_labels(np.array([0, 10]), 10, "y")


def test_softmax_cross_entropy_shape_errors(backend):
    logits = backend.asarray(np.zeros((3, 4)))
    with pytest.raises(ShapeError, match=r"target shape \(3, 5\) does not match logits shape"):
        ap.SoftmaxCrossEntropy().value_and_grad(logits, np.zeros((3, 5)))
    with pytest.raises(ShapeError, match="2 labels for 3 logits rows"):
        ap.SoftmaxCrossEntropy().value_and_grad(logits, np.array([0, 1]))
    with pytest.raises(ShapeError, match=r"logits must have shape \(batch, classes\), got \(4,\)"):
        ap.SoftmaxCrossEntropy().value_and_grad(backend.asarray(np.zeros(4)), np.array([0]))


@pytest.mark.parametrize("name", [n for n in LOSSES if not n.startswith("sce")])
def test_elementwise_losses_reject_a_target_of_another_shape(backend, name):
    pred = backend.asarray(np.full((3, 2), 0.5))
    with pytest.raises(ShapeError, match=r"target shape \(2, 3\) does not match prediction"):
        LOSSES[name]().value_and_grad(pred, np.zeros((2, 3)))


def test_predictions_must_be_floating_point(backend):
    ints = backend.asarray(np.ones((2, 2), dtype=np.int64))
    for loss in (ap.MSE(), ap.SoftmaxCrossEntropy()):
        with pytest.raises(DTypeError, match="predictions must be floating point"):
            loss.value_and_grad(ints, np.ones((2, 2)))


def test_get_loss_and_constructor_checks():
    assert type(ap.get_loss("softmax-ce")) is ap.SoftmaxCrossEntropy
    assert type(ap.get_loss("MSE")) is ap.MSE
    loss = ap.L2Loss("mean")
    assert ap.get_loss(loss) is loss
    assert loss.config() == {"type": "L2Loss", "reduction": "mean"}
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid: softmax-ce"):
        ap.get_loss("hinge")
    with pytest.raises(
        ValueError, match=r"^L2Loss: reduction must be one of 'sum', 'mean', got 'max'$"
    ):
        ap.L2Loss("max")
    for eps in (0.0, 0.5, -1e-7, float("nan")):
        with pytest.raises(
            ValueError,
            match=rf"^BinaryCrossEntropy: eps must be a finite number in \(0, 0\.5\), got {eps}$",
        ):
            ap.BinaryCrossEntropy(eps=eps)


def test_rmse_value_and_gradient(backend, rng):
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    value, grad = ap.RMSE().value_and_grad(backend.asarray(y), t)
    m = y.size
    total = 0.0
    for i in range(4):
        for j in range(3):
            total += (y[i, j] - t[i, j]) ** 2
    c = (total / m) ** 0.5
    assert float(backend.to_host(value)) == pytest.approx(c, rel=1e-13)
    np.testing.assert_allclose(backend.to_host(grad), (y - t) / (m * c), rtol=1e-12)


def test_rmse_of_a_perfect_prediction_has_a_zero_gradient_not_nan(backend, rng):
    y = rng.standard_normal((4, 3))
    value, grad = ap.RMSE().value_and_grad(backend.asarray(y), y.copy())
    assert float(backend.to_host(value)) == 0.0
    np.testing.assert_array_equal(backend.to_host(grad), np.zeros((4, 3)))


# -- per-sample weights (eq. 15a) ------------------------------------------------------------------

#: Weights with a zero, fractions and a large one: every term of eq. 15a is exercised.
WEIGHTS = np.array([0.0, 0.5, 1.0, 2.0, 3.25])


def per_sample(name: str, y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C_n, ∂C_n/∂y_n) of each sample alone (rmse: of the MSE, which eq. 15a weights)."""
    inner = "mse" if name == "rmse" else "l2_sum" if name == "l2_mean" else name
    pairs = [reference(inner, y[i : i + 1], t[i : i + 1]) for i in range(len(y))]
    return np.array([c for c, _ in pairs]), np.concatenate([g for _, g in pairs])


@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_value_and_gradient_match_the_definition(backend, name, rng):
    """Eq. 15a from the per-sample definitions (the reference above, one sample at a time)."""
    pred, target = loss_inputs(name, rng)
    c_n, g_n = per_sample(name, pred, target)
    w = WEIGHTS
    if name == "l2_sum":
        c, g = (w * c_n).sum(), w[:, None] * g_n
    else:
        c, g = (w * c_n).sum() / w.sum(), w[:, None] * g_n / w.sum()
    if name == "rmse":
        c, g = math.sqrt(c), g / (2 * math.sqrt(c))
    loss = LOSSES[name]()
    value, grad = loss.value_and_grad(backend.asarray(pred), target, sample_weight=w)
    assert float(backend.to_host(value)) == pytest.approx(c, rel=1e-12)
    np.testing.assert_allclose(host(backend, grad), g, rtol=1e-11, atol=1e-15)
    # __call__ passes the weights too; weights on the backend are taken as they are.
    value = loss(backend.asarray(pred), target, sample_weight=backend.asarray(w))
    assert float(backend.to_host(value)) == pytest.approx(c, rel=1e-12)
    np.testing.assert_allclose(host(backend, loss.backward()), g, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_integer_weights_equal_duplicated_samples(backend, name, rng):
    """A weight of k is the sample listed k times (0: left out): the same value, and the
    duplicates' gradient rows summed give the weighted row."""
    pred, target = loss_inputs(name, rng, n=6)
    counts = np.array([2, 0, 1, 3, 1, 2])
    loss = LOSSES[name]()
    value, grad = loss.value_and_grad(backend.asarray(pred), target, sample_weight=counts)
    rows = np.repeat(np.arange(6), counts)
    v_dup, g_dup = loss.value_and_grad(backend.asarray(pred[rows]), target[rows])
    assert float(backend.to_host(value)) == pytest.approx(float(backend.to_host(v_dup)), rel=1e-13)
    summed = np.zeros_like(pred)
    np.add.at(summed, rows, host(backend, g_dup))
    np.testing.assert_allclose(host(backend, grad), summed, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_unit_weights_change_nothing_and_zero_weights_give_zero(backend, name, rng):
    pred, target = loss_inputs(name, rng)
    loss = LOSSES[name]()
    p = backend.asarray(pred)
    v1, g1 = loss.value_and_grad(p, target)
    v2, g2 = loss.value_and_grad(p, target, sample_weight=np.ones(5))
    assert float(backend.to_host(v2)) == pytest.approx(float(backend.to_host(v1)), rel=1e-13)
    np.testing.assert_allclose(host(backend, g2), host(backend, g1), rtol=1e-12, atol=1e-16)
    v0, g0 = loss.value_and_grad(p, target, sample_weight=np.zeros(5))
    assert float(backend.to_host(v0)) == 0.0
    assert not np.any(host(backend, g0))


class _WithWeights(ap.Loss):
    """A loss with fixed per-sample weights, for gradcheck (which calls value_and_grad(p, t))."""

    def __init__(self, inner: ap.Loss, w: np.ndarray) -> None:
        super().__init__()
        self.inner, self.w = inner, w

    def value_and_grad(self, pred, target):
        return self.inner.value_and_grad(pred, target, sample_weight=self.w)


@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_gradcheck(backend, name, rng):
    """Float64 central differences of the weighted value agree with the weighted gradient."""
    pred = rng.uniform(0.1, 0.9, (5, 3)) if name == "bce" else rng.standard_normal((5, 3))
    _, target = loss_inputs(name, rng)
    errors = ap.gradcheck(_WithWeights(LOSSES[name](), WEIGHTS), backend.asarray(pred), target)
    assert errors["input"] < 1e-7, errors


@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_agree_with_torch_autograd(backend, name, rng):
    """PyTorch's reduction="none" losses times the weights, over their sum, through autograd."""
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    pred, target = loss_inputs(name, rng)
    y = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(target)
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    if name.startswith("sce"):
        per = f.cross_entropy(y, t, reduction="none")
    elif name == "bce":
        per = f.binary_cross_entropy(y, t, reduction="none").mean(dim=1)
    elif name == "bce_logits":
        per = f.binary_cross_entropy_with_logits(y, t, reduction="none").mean(dim=1)
    elif name.startswith("l2"):
        per = 0.5 * f.mse_loss(y, t, reduction="none").sum(dim=1)
    else:
        per = f.mse_loss(y, t, reduction="none").mean(dim=1)
    c = (w * per).sum() if name == "l2_sum" else (w * per).sum() / w.sum()
    if name == "rmse":
        c = torch.sqrt(c)
    c.backward()
    value, grad = LOSSES[name]().value_and_grad(
        backend.asarray(pred), target, sample_weight=WEIGHTS
    )
    assert float(backend.to_host(value)) == pytest.approx(c.item(), rel=1e-12)
    np.testing.assert_allclose(host(backend, grad), y.grad.numpy(), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("name", ["l2_mean", "sce_labels"])
def test_weighted_rejects_weights_of_another_shape(backend, name, rng):
    pred, target = loss_inputs(name, rng)
    with pytest.raises(ShapeError, match=r"sample_weight must have shape \(5,\).*got \(4,\)"):
        LOSSES[name]().value_and_grad(backend.asarray(pred), target, sample_weight=np.ones(4))


def test_weighted_nd_predictions_weight_whole_samples(backend, rng):
    """Predictions (n, h, k): each sample's weight covers all its elements."""
    pred, target = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    w = np.array([1.0, 2.0, 0.0, 1.0])
    rows = np.repeat(np.arange(4), w.astype(int))
    value, _ = ap.MSE().value_and_grad(backend.asarray(pred), target, sample_weight=w)
    v_dup, _ = ap.MSE().value_and_grad(backend.asarray(pred[rows]), target[rows])
    assert float(backend.to_host(value)) == pytest.approx(float(backend.to_host(v_dup)), rel=1e-13)
