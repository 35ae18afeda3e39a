"""BatchNorm1d, BatchNorm2d and LayerNorm: gradcheck, PyTorch autograd and running statistics,
checkpoints, ``.to()``, ``state_dict`` names and bad input (eqs. 18–22 of docs/math.md)."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.errors import DTypeError, ShapeError
from helpers import host

torch = pytest.importorskip("torch")


def random_shape(rng: np.random.Generator, kind: str) -> tuple[int, ...]:
    """A random input shape for ``kind``: odd sizes, batch 2 and up for batch norm."""
    n = int(rng.integers(2, 7))
    c = int(rng.integers(1, 6))
    if kind == "bn1d":
        return (n, c)
    if kind == "bn1d_l":
        return (n, c, int(rng.integers(1, 5)))
    if kind == "bn2d":
        return (int(rng.integers(1, 4)), c, int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    # layer norm: (batch, leading..., normalised...) with 1-3 normalised axes
    k = int(rng.integers(1, 4))
    lead = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(0, 2))))
    return (int(rng.integers(1, 5)), *lead, *(int(d) for d in rng.integers(1, 5, size=k)))


def make(kind: str, shape: tuple[int, ...], be: ap.Backend, rng: np.random.Generator, **kw):
    """Our layer and PyTorch's, with the same random γ and β."""
    if kind.startswith("bn"):
        dims = (shape[1],)
        ours = ap.BatchNorm2d if kind == "bn2d" else ap.BatchNorm1d
        theirs = torch.nn.BatchNorm2d if kind == "bn2d" else torch.nn.BatchNorm1d
        args = (shape[1],)
    else:
        k = kw.pop("k")
        dims = shape[len(shape) - k :]
        ours, theirs, args = ap.LayerNorm, torch.nn.LayerNorm, (dims,)
    affine = kw.get("affine", kw.get("elementwise_affine", True))
    w = rng.standard_normal(dims) if affine else None
    b = rng.standard_normal(dims) if affine else None
    layer = ours(*args, weight=w, bias=b, backend=be, **kw)
    ref = theirs(*args, dtype=torch.float64, **kw)
    if affine:
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(w))
            ref.bias.copy_(torch.from_numpy(b))
    return layer, ref


def normalised_axes(rng: np.random.Generator, shape: tuple[int, ...]) -> int:
    return int(rng.integers(1, len(shape)))


KINDS = ["bn1d", "bn1d_l", "bn2d", "ln"]


# -- gradcheck ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(backend, kind, seed, training):
    rng = np.random.default_rng(seed)
    shape = random_shape(rng, kind)
    kw = {"k": normalised_axes(rng, shape)} if kind == "ln" else {}
    layer, _ = make(kind, shape, backend, rng, **kw)
    if kind.startswith("bn"):  # eval mode with running statistics away from 0 and 1
        layer.forward(backend.asarray(rng.standard_normal(shape) * 3 + 2))
    layer.train(training)
    errors = ap.gradcheck(layer, rng.standard_normal(shape) * 2 + 0.5)
    assert max(errors.values()) < 1e-6, errors
    assert set(errors) == {"weight", "bias", "input"}


def test_gradcheck_in_a_model(backend, rng):
    model = ap.Sequential(
        ap.Dense(3, 6, seed=0, backend=backend),
        ap.BatchNorm1d(6, backend=backend),
        ap.Tanh(),
        ap.Dense(6, 4, seed=1, backend=backend),
        ap.LayerNorm(4, backend=backend),
    )
    x = rng.standard_normal((5, 3))
    errors = ap.gradcheck(model, x)
    # The batch norm removes any per-channel shift, so ∂C/∂b of the Dense before it is 0 and
    # its relative error is that of two rounding noises: check it is 0 instead.
    shift = errors.pop("0.bias")
    assert max(errors.values()) < 1e-6, (errors, shift)
    model.forward(backend.asarray(x))
    model.backward(backend.asarray(rng.standard_normal((5, 4))))
    assert np.abs(host(backend, model.layers[0].bias.grad)).max() < 1e-12
    assert {"1.weight", "1.bias", "4.weight", "4.bias"} <= set(errors)


# -- against PyTorch autograd ---------------------------------------------------------------------


def compare_with_torch(be, layer, ref, batches, grads, tol=1e-10):
    for x, g in zip(batches, grads, strict=True):
        y = layer.forward(be.asarray(x))
        dx = layer.backward(be.asarray(g))
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        ref.zero_grad()
        yt.backward(torch.from_numpy(g))
        np.testing.assert_allclose(host(be, y), yt.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(host(be, dx), xt.grad.numpy(), rtol=tol, atol=tol)
        if layer.weight is not None:
            for p, q in ((layer.weight, ref.weight), (layer.bias, ref.bias)):
                np.testing.assert_allclose(host(be, p.grad), q.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["bn1d", "bn1d_l", "bn2d"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_agrees_with_torch_and_its_running_statistics(backend, kind, seed, affine):
    rng = np.random.default_rng(100 + seed)
    shape = random_shape(rng, kind)
    momentum = [0.1, 0.3, 1.0][seed]
    layer, ref = make(kind, shape, backend, rng, momentum=momentum, affine=affine)
    batches = [rng.standard_normal(shape) * (i + 1) + i for i in range(4)]
    grads = [rng.standard_normal(shape) for _ in batches]
    compare_with_torch(backend, layer, ref, batches, grads)
    for ours, theirs in (
        (layer.running_mean, ref.running_mean),
        (layer.running_var, ref.running_var),
    ):
        np.testing.assert_allclose(host(backend, ours.data), theirs.numpy(), rtol=1e-12)
    layer.eval()
    ref.eval()
    x = rng.standard_normal(shape)
    compare_with_torch(backend, layer, ref, [x], [rng.standard_normal(shape)])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_agrees_with_torch(backend, seed, affine):
    rng = np.random.default_rng(200 + seed)
    shape = random_shape(rng, "ln")
    k = normalised_axes(rng, shape)
    layer, ref = make("ln", shape, backend, rng, k=k, elementwise_affine=affine)
    batches = [rng.standard_normal(shape) * 3 - 1 for _ in range(2)]
    compare_with_torch(backend, layer, ref, batches, [rng.standard_normal(shape) for _ in batches])
    layer.eval()  # no running statistics: the same in evaluation mode
    ref.eval()
    compare_with_torch(backend, layer, ref, batches[:1], [rng.standard_normal(shape)])


def test_layer_norm_takes_an_int_or_a_tuple(backend, rng):
    x = backend.asarray(rng.standard_normal((3, 4)))
    a = ap.LayerNorm(4, backend=backend).forward(x)
    b = ap.LayerNorm((4,), backend=backend).forward(x)
    np.testing.assert_array_equal(host(backend, a), host(backend, b))
    assert ap.LayerNorm([2, 3]).normalized_shape == (2, 3)


def test_running_statistics_are_new_arrays_and_move_only_in_training(backend, rng):
    layer = ap.BatchNorm1d(3, backend=backend)
    mean0 = layer.running_mean.data
    before = host(backend, mean0)
    layer.forward(backend.asarray(rng.standard_normal((4, 3)) + 5))
    assert layer.running_mean.data is not mean0
    np.testing.assert_array_equal(host(backend, mean0), before)  # not written in place
    assert not np.allclose(host(backend, layer.running_mean.data), before)
    layer.eval()
    after = host(backend, layer.running_mean.data)
    layer.forward(backend.asarray(rng.standard_normal((4, 3)) - 5))
    np.testing.assert_array_equal(host(backend, layer.running_mean.data), after)


def test_initial_state_follows_pytorch(backend):
    layer = ap.BatchNorm2d(3, backend=backend)
    for p, value in (
        (layer.weight, 1),
        (layer.bias, 0),
        (layer.running_mean, 0),
        (layer.running_var, 1),
    ):
        np.testing.assert_array_equal(host(backend, p.data), np.full(3, value))
    assert layer.eps == 1e-5 and layer.momentum == 0.1
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_var"]
    assert ap.BatchNorm1d(2, affine=False).parameters() == []
    assert ap.LayerNorm(2, elementwise_affine=False).parameters() == []


# -- state: state_dict, checkpoints, .to() --------------------------------------------------------


def trained_model(be, rng):
    model = ap.Sequential(
        ap.Dense(4, 5, seed=0, backend=be),
        ap.BatchNorm1d(5, momentum=0.2, backend=be),
        ap.ReLU(),
        ap.Dense(5, 3, seed=1, backend=be),
        ap.LayerNorm(3, eps=1e-3, backend=be),
    )
    x, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, batch_size=8, progress=False)
    return model, x


def test_state_dict_names(backend):
    model = ap.Sequential(ap.Dense(4, 5, backend=backend), ap.BatchNorm1d(5, backend=backend))
    assert list(model.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
    ]


def test_fit_trains_the_statistics_and_predict_uses_them(backend, rng):
    model, x = trained_model(backend, rng)
    bn = model.layers[1]
    assert not np.allclose(host(backend, bn.running_var.data), 1)
    # predict runs in evaluation mode: the running statistics, not the batch's
    one = host(backend, model.predict(x[:1]))
    many = host(backend, model.predict(x))
    np.testing.assert_allclose(one[0], many[0], rtol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "array_api_strict", "torch"])
def test_checkpoint_round_trip_and_to_carry_the_buffers(backend, target, rng, tmp_path):
    model, x = trained_model(backend, rng)
    path = tmp_path / "bn.npz"
    ap.save_checkpoint(model, path)
    loaded = ap.load_checkpoint(path, backend=target).model
    moved = model.to(target)
    want = model.state_dict()
    for other in (loaded, moved):
        got = other.state_dict()
        assert list(got) == list(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        np.testing.assert_allclose(
            other.backend.to_host(other.predict(x)),
            host(backend, model.predict(x)),
            rtol=1e-12,
            atol=1e-13,
        )
    assert loaded.layers[1].config() == {
        "num_features": 5,
        "eps": 1e-5,
        "momentum": 0.2,
        "affine": True,
    }


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (
            ap.BatchNorm1d(3),
            (4, 5),
            r"BatchNorm1d\(3\): expected input of shape \(N, 3\) .*\(4, 5\)",
        ),
        (ap.BatchNorm1d(3), (4,), r"BatchNorm1d\(3\): .*got \(4,\)"),
        (ap.BatchNorm1d(3), (2, 3, 4, 5), r"BatchNorm1d\(3\): .*got \(2, 3, 4, 5\)"),
        (ap.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d\(3\): .*\(N, 3, H, W\).*\(2, 4, 5, 5\)"),
        (ap.BatchNorm2d(3), (2, 3), r"BatchNorm2d\(3\): .*\(N, 3, H, W\).*\(2, 3\)"),
        (
            ap.LayerNorm((2, 3)),
            (4, 3, 2),
            r"LayerNorm\(\(2, 3\)\): .*\(batch, \.\.\., 2, 3\).*\(4, 3, 2\)",
        ),
        (ap.LayerNorm(3), (3,), r"LayerNorm\(3\): .*got \(3,\)"),
    ],
)
def test_wrong_shapes_name_the_layer_and_both_shapes(backend, layer, shape, message):
    layer = layer.to(backend)
    with pytest.raises(ShapeError, match=message):
        layer.forward(backend.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_one_value_per_channel_is_refused_in_training_like_pytorch(backend, shape):
    layer = (ap.BatchNorm2d if len(shape) == 4 else ap.BatchNorm1d)(3, backend=backend)
    with pytest.raises(ShapeError, match=r"more than 1 value per channel .*batch of at least 2"):
        layer.forward(backend.zeros(shape))
    layer.eval()  # the running statistics need no batch
    assert tuple(layer.forward(backend.zeros(shape)).shape) == shape


def test_batch_one_with_spatial_axes_is_fine(backend, rng):
    layer = ap.BatchNorm2d(2, backend=backend)
    assert ap.gradcheck(layer, rng.standard_normal((1, 2, 2, 3)))["input"] < 1e-6


def test_dtype_and_backward_checks(backend, backend32):
    for layer in (ap.BatchNorm1d(3, backend=backend), ap.LayerNorm(3, backend=backend)):
        with pytest.raises(DTypeError, match=r"expected input of dtype float64"):
            layer.forward(backend32.zeros((2, 3)))
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(backend.zeros((2, 3)))
        layer.forward(backend.asarray(np.arange(6.0).reshape(2, 3)))
        with pytest.raises(
            ShapeError, match=r"expected a gradient of shape \(2, 3\), got \(3, 3\)"
        ):
            layer.backward(backend.zeros((3, 3)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ap.BatchNorm1d(0), r"BatchNorm1d: num_features must be an int >= 1, got 0"),
        (lambda: ap.BatchNorm2d(3, momentum=1.5), r"momentum must be a finite number in \[0, 1\]"),
        (lambda: ap.BatchNorm1d(3, eps=0), r"eps must be a finite number > 0"),
        (lambda: ap.LayerNorm(()), r"LayerNorm: normalized_shape must be"),
        (lambda: ap.LayerNorm((2, 0)), r"LayerNorm: normalized_shape must be an int >= 1"),
        (lambda: ap.BatchNorm1d(3, affine=False, weight=[1, 2, 3]), r"need the affine transform"),
    ],
)
def test_constructor_arguments_are_checked(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_exact_weights_are_checked_and_copied(backend):
    with pytest.raises(ShapeError, match=r"BatchNorm1d\(3\): weight must have shape \(3,\)"):
        ap.BatchNorm1d(3, weight=np.ones(4), backend=backend)
    with pytest.raises(ShapeError, match=r"LayerNorm\(\(2, 2\)\): bias must have shape \(2, 2\)"):
        ap.LayerNorm((2, 2), bias=np.ones(4), backend=backend)
    w = np.array([1.0, 2.0, 3.0])
    layer = ap.BatchNorm1d(3, weight=w, backend=backend)
    np.testing.assert_array_equal(host(backend, layer.weight.data), w)
    assert layer.weight.data is not w
