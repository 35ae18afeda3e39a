"""GELU, SiLU, ELU, Softplus and Dropout (issue 12): gradient checks, PyTorch autograd as the
reference on every backend, Dropout's masks and modes, bad input, checkpoints and ``.to()``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import DTypeError, ShapeError
from arrayprop.nn.activations import normal_cdf

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: (id, layer factory, the PyTorch function with the same definition)
ACTIVATIONS = [
    ("gelu", ap.GELU, F.gelu),
    ("gelu_tanh", lambda: ap.GELU("tanh"), lambda t: F.gelu(t, approximate="tanh")),
    ("silu", ap.SiLU, F.silu),
    ("elu", ap.ELU, F.elu),
    ("elu_0.3", lambda: ap.ELU(alpha=0.3), lambda t: F.elu(t, alpha=0.3)),
    ("softplus", ap.Softplus, F.softplus),
]
IDS = [name for name, _, _ in ACTIVATIONS]

#: Batch 1, odd sizes and N-D inputs (batch, 3, 5).
SHAPES = [(1, 4), (7, 3), (2, 3, 5), (1, 3, 5), (4, 2, 3, 2)]


def _input(shape, seed, scale=2.0):
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    # The kinks and thresholds themselves: ELU at 0, Softplus at 20 and past it.
    flat = x.reshape(-1)
    flat[0] = 0.0
    if flat.size > 2:
        flat[1], flat[2] = 25.0, -25.0
    return x


@pytest.mark.parametrize(("name", "make", "_"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_activation_gradcheck(backend, name, make, _, shape):
    # Central differences straddle the kink of ELU at 0: keep inputs off it here.
    x = np.random.default_rng(len(shape)).standard_normal(shape) * 2.0
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    errors = ap.gradcheck(make(), backend.asarray(x))
    assert errors["input"] < 1e-6, errors


@pytest.mark.parametrize(("name", "make", "torch_f"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_activation_agrees_with_torch_autograd(backend, name, make, torch_f, shape):
    x = _input(shape, seed=sum(shape))
    g = np.random.default_rng(1).standard_normal(shape)
    layer = make()
    out = backend.to_host(layer.forward(backend.asarray(x)))
    grad_in = backend.to_host(layer.backward(backend.asarray(g)))

    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = torch_f(t)
    ref.backward(torch.tensor(g, dtype=torch.float64))
    assert out.shape == shape and grad_in.shape == shape
    # atol only for values that are zero to rounding (GELU' crosses 0 near z = -0.75).
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grad_in, t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_normal_cdf_matches_math_erfc_in_float64():
    be = ap.get_backend("numpy", dtype="float64")
    z = np.concatenate([np.linspace(-37.0, 9.0, 4001), [-2.0 * math.sqrt(2.0), 0.0]])
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])
    got = be.to_host(normal_cdf(be.xp, be.asarray(z)))
    np.testing.assert_allclose(got, ref, rtol=5e-13, atol=0)


def test_normal_cdf_in_float32_is_float32_accurate(backend):
    be = backend.with_dtype("float32")
    z = np.linspace(-8.0, 8.0, 401)
    got = be.to_host(normal_cdf(be.xp, be.asarray(z)))
    assert str(got.dtype) == "float32"
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])
    # Absolute float32 rounding: 1 − erf t cancels in the lower tail for t < 2.
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=5e-7)


def test_activations_are_finite_for_extreme_inputs(backend):
    x = backend.asarray(np.array([[-1e300, -800.0, -40.0, 0.0, 40.0, 800.0, 1e300]]))
    for _, make, _ in ACTIVATIONS:
        layer = make()
        out = backend.to_host(layer.forward(x))
        grad = backend.to_host(layer.backward(backend.asarray(np.ones((1, 7)))))
        assert np.all(np.isfinite(out[:, 1:-1])) and np.all(np.isfinite(grad)), layer


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "softplus"])
def test_mlp_takes_the_new_activation_names(backend, name):
    model = ap.mlp([3, 5, 2], activation=name, seed=0, backend=backend)
    assert type(model[1]) is ap.nn.ACTIVATIONS[name]
    x = np.random.default_rng(0).standard_normal((4, 3))
    assert ap.gradcheck(model, backend.asarray(x))["input"] < 1e-6


def test_constructor_arguments_are_validated():
    with pytest.raises(ValueError, match=r"GELU: approximate must be one of 'none', 'tanh', got"):
        ap.GELU("erf")
    with pytest.raises(ValueError, match=r"ELU: alpha must be a finite number > 0, got -1"):
        ap.ELU(alpha=-1.0)


# -- Dropout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dropout_gradcheck_in_eval_mode(backend, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    assert ap.gradcheck(ap.Dropout(0.4).eval(), backend.asarray(x))["input"] < 1e-6


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dropout_training_applies_one_mask_forward_and_backward(backend, shape):
    p = 0.4
    x = np.random.default_rng(0).standard_normal(shape)
    g = np.random.default_rng(1).standard_normal(shape)
    layer = ap.Dropout(p)
    y = backend.to_host(layer.forward(backend.asarray(x)))
    mask = backend.to_host(layer._mask)
    dx = backend.to_host(layer.backward(backend.asarray(g)))
    # Outside a training step the layer's own stream, seeded 0, gives the mask.
    u = ap.Dropout(p).step_rng().random(shape)
    expected = (u >= p) / (1 - p)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_allclose(y, x * expected, rtol=1e-15)
    np.testing.assert_allclose(dx, g * expected, rtol=1e-15)


def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero(backend):
    x = backend.asarray(np.random.default_rng(0).standard_normal((6, 3, 5)))
    g = backend.asarray(np.ones((6, 3, 5)))
    for layer in (ap.Dropout(0.5).eval(), ap.Dropout(0.0), ap.Dropout(0)):
        assert layer.forward(x) is x
        assert layer.backward(g) is g
    model = ap.Sequential(ap.Dense(5, 5, seed=0, backend=backend), ap.Dropout(0.9))
    first = backend.to_host(model.predict(x))
    np.testing.assert_array_equal(first, backend.to_host(model.predict(x)))


def test_dropout_preserves_the_mean_statistically(backend):
    p, n = 0.3, 200_000
    layer = ap.Dropout(p)
    y = backend.to_host(layer.forward(backend.asarray(np.ones((n, 1)))))
    kept = y != 0
    # The kept fraction is 1 - p within 5 standard deviations, and E[y] = 1.
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sd
    assert abs(y.mean() - 1.0) < 5 * sd / (1 - p)
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)


class _Recording(ap.Dropout):
    """Dropout that keeps a host copy of every mask it draws."""

    def __init__(self, p):
        super().__init__(p)
        self.masks = []

    def forward(self, x):
        out = super().forward(x)
        if not isinstance(self._mask, str):
            self.masks.append(self.backend.to_host(self._mask).copy())
        return out


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_dropout_masks_are_the_same_on_every_backend():
    x, y = _data()
    runs = []
    for name in [n for n in ("numpy", "torch", "array_api_strict") if n in ap.BACKENDS]:
        be = ap.get_backend(name, dtype="float64")
        model = ap.Sequential(
            ap.Dense(4, 6, seed=0, backend=be), _Recording(0.5), ap.ReLU(), _Recording(0.2),
            ap.Dense(6, 3, seed=1, backend=be),
        )  # fmt: skip
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
               progress=False, seed=11)  # fmt: skip
        step = ap.train_step(model, ap.SoftmaxCrossEntropy(), ap.SGD(model.parameters()),
                             be.asarray(x[:8]), y[:8], seed=3)  # fmt: skip
        assert step is not None
        runs.append((name, model[1].masks + model[3].masks))
    base_name, base = runs[0]
    assert len(base) == 2 * 9
    assert len({m.tobytes() for m in base}) == len(base)  # a new mask every step and layer
    for name, masks in runs[1:]:
        for a, b in zip(base, masks, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{base_name} vs {name}")


def test_dropout_run_resumes_exactly(tmp_path):
    be = ap.get_backend("numpy", dtype="float64")
    x, y = _data()

    def model():
        return ap.Sequential(
            ap.Dense(4, 6, seed=0, backend=be), ap.Dropout(0.5), ap.Dense(6, 3, seed=1, backend=be)
        )

    whole = model()
    ap.fit(whole, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
           progress=False, seed=7)  # fmt: skip
    path = tmp_path / "run.npz"
    ap.fit(model(), x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=8,
           progress=False, seed=7, checkpoint=path)  # fmt: skip
    resumed = model()
    ap.fit(resumed, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
           progress=False, seed=7, checkpoint=path, resume=True)  # fmt: skip
    for (name, a), (_, b) in zip(
        whole.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_dropout_refuses_a_bad_p(p):
    with pytest.raises((ValueError, TypeError), match=r"^Dropout: p must be a finite number in "
                       r"\[0, 1\), got"):  # fmt: skip
        ap.Dropout(p)


# -- bad input -----------------------------------------------------------------------------------

LAYERS = [*(make for _, make, _ in ACTIVATIONS), lambda: ap.Dropout(0.3)]
LAYER_IDS = [*IDS, "dropout"]


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
def test_backward_before_forward_is_refused(backend, make):
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        make().backward(backend.asarray(np.ones((2, 3))))


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
def test_a_gradient_of_the_wrong_dtype_or_shape_is_refused(backend, make):
    layer = make()
    layer.forward(backend.asarray(np.ones((2, 3))))
    with pytest.raises(DTypeError, match=r"expected a gradient of dtype .*float64, got .*float32"):
        layer.backward(backend.with_dtype("float32").asarray(np.ones((2, 3))))
    with pytest.raises(ShapeError, match=r"gradient of shape \(2, 4\) does not match .*\(2, 3\)"):
        layer.backward(backend.asarray(np.ones((2, 4))))


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
def test_an_input_without_a_batch_axis_is_refused(backend, make):
    with pytest.raises(ShapeError, match=r"expected input of shape \(batch, \.\.\.\), got \(3,\)"):
        make().forward(backend.asarray(np.ones(3)))


# -- checkpoints and .to() -----------------------------------------------------------------------


def _model(be):
    return ap.Sequential(
        ap.Dense(5, 8, seed=0, backend=be), ap.GELU(), ap.Dropout(0.25),
        ap.Dense(8, 8, seed=1, backend=be), ap.GELU("tanh"), ap.SiLU(), ap.ELU(alpha=0.5),
        ap.Softplus(), ap.Dense(8, 3, seed=2, backend=be),
    )  # fmt: skip


def test_checkpoint_round_trip_and_to(backend, tmp_path):
    model = _model(backend)
    x = np.random.default_rng(0).standard_normal((6, 5))
    y = np.random.default_rng(1).integers(0, 3, 6)
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, batch_size=3,
           progress=False, seed=0)  # fmt: skip
    want = backend.to_host(model.predict(x))

    path = tmp_path / "m.npz"
    ap.save_checkpoint(model, path)
    for name in ("numpy", backend.name):
        loaded = ap.load_checkpoint(path, backend=name, dtype="float64").model
        assert [repr(layer) for layer in loaded] == [repr(layer) for layer in model]
        np.testing.assert_allclose(
            loaded.backend.to_host(loaded.predict(x)), want, rtol=1e-12, atol=1e-13
        )

    moved = model.to("numpy")
    assert moved[2].p == 0.25 and moved[4].approximate == "tanh" and moved[6].alpha == 0.5
    np.testing.assert_allclose(
        moved.backend.to_host(moved.predict(x)), want, rtol=1e-12, atol=1e-13
    )
    as32 = model.to(dtype="float32")
    np.testing.assert_allclose(as32.backend.to_host(as32.predict(x)), want, rtol=1e-4, atol=1e-5)
    assert "Dropout" in str(model.summary())
