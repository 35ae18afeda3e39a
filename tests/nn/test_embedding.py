"""Embedding (eqs. 40, 41 of docs/math.md): the gather against NumPy, the weight gradient against
PyTorch autograd and the fast path against the portable one-hot GEMM, gradcheck with integer
input, bad indices, checkpoints and ``.to()``, and training with integer x."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.errors import DataError, DTypeError, ShapeError
from helpers import host

torch = pytest.importorskip("torch")

#: Index shapes: batch 1, 1-d, and N-d, each with repeated indices (V = 5 rows, more draws).
SHAPES = [(1,), (1, 7), (9,), (3, 4), (2, 3, 4)]


def table(rng: np.random.Generator, v: int = 5, d: int = 3) -> np.ndarray:
    return rng.standard_normal((v, d))


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_is_a_gather(backend, rng, shape):
    w = table(rng)
    idx = rng.integers(0, 5, shape)
    layer = ap.Embedding(5, 3, weight=w, backend=backend)
    y = layer.forward(backend.asarray(idx))
    assert tuple(y.shape) == (*shape, 3)
    np.testing.assert_array_equal(host(backend, y), w[idx])


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_weight_gradient_matches_torch_autograd(backend, rng, shape, portable):
    w = table(rng)
    idx = rng.integers(0, 5, shape)
    idx.reshape(-1)[:2] = 3  # a repeated index, always
    g = rng.standard_normal((*shape, 3))
    layer = ap.Embedding(5, 3, weight=w, backend=backend)
    with kernels.use_portable(portable):
        layer.forward(backend.asarray(idx))
        assert layer.backward(backend.asarray(g)) is None  # indices are not differentiable
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(idx), tw).backward(torch.tensor(g))
    np.testing.assert_allclose(host(backend, layer.weight.grad), tw.grad.numpy(), rtol=1e-12)


def test_numpy_fast_path_matches_the_portable_one_hot_gemm(rng):
    be = ap.get_backend("numpy", dtype="float64")
    idx = rng.integers(0, 50, 400)
    g = rng.standard_normal((400, 6))
    fast = kernels.embedding_grad(be, idx, g, 50)
    with kernels.use_portable():
        reference = kernels.embedding_grad(be, idx, g, 50)
    np.testing.assert_allclose(fast, reference, rtol=1e-12, atol=1e-12)
    assert fast.shape == (50, 6) and fast.dtype == g.dtype


@pytest.mark.parametrize("shape", [(1, 3), (2, 3, 2)])
def test_gradcheck_with_integer_input_checks_the_weight_only(backend, rng, shape):
    idx = rng.integers(0, 4, shape)
    model = ap.Sequential(
        ap.Embedding(4, 3, seed=0, backend=backend),
        ap.Flatten(),
        ap.Dense(3 * int(np.prod(shape[1:])), 2, seed=1, backend=backend),
    )
    errors = ap.gradcheck(model, idx)
    assert set(errors) == {"0.weight", "2.weight", "2.bias"}  # no "input": never perturbed
    assert max(errors.values()) < 1e-6, errors
    # a lone Embedding, from a backend array of indices
    errors = ap.gradcheck(ap.Embedding(4, 3, seed=2, backend=backend), backend.asarray(idx))
    assert set(errors) == {"weight"} and errors["weight"] < 1e-6


def test_gradcheck_still_checks_float_input(backend, rng):
    errors = ap.gradcheck(ap.Dense(3, 2, seed=0, backend=backend), rng.standard_normal((2, 3)))
    assert "input" in errors and errors["input"] < 1e-6


def test_bad_indices_are_refused_with_clear_messages(backend):
    layer = ap.Embedding(5, 3, seed=0, backend=backend)
    with pytest.raises(DTypeError, match=r"indices must be integers, got .*float"):
        layer.forward(backend.asarray(np.array([[0.0, 1.0]])))
    with pytest.raises(ShapeError, match="0-d"):
        layer.forward(backend.asarray(np.array(1)))
    if not backend.on_host:
        pytest.skip("out-of-range indices are checked on host backends only (documented)")
    with pytest.raises(DataError, match=r"index 5 at position \(1, 0\) is out of range .* 5 rows"):
        layer.forward(backend.asarray(np.array([[0, 1], [5, 2]])))
    with pytest.raises(DataError, match=r"index -1 at position 2"):
        layer.forward(backend.asarray(np.array([0, 1, -1])))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_embeddings"):
        ap.Embedding(0, 3)
    with pytest.raises(ShapeError, match=r"weight must have shape \(4, 3\)"):
        ap.Embedding(4, 3, weight=np.zeros((3, 4)))


def test_default_init_is_standard_normal_and_seeded():
    a = ap.Embedding(200, 50, seed=3, backend="numpy", dtype="float64")
    b = ap.Embedding(200, 50, seed=3, backend="numpy", dtype="float64")
    w = host(a.backend, a.weight.data)
    np.testing.assert_array_equal(w, host(b.backend, b.weight.data))
    assert abs(w.std() - 1.0) < 0.05 and abs(w.mean()) < 0.05
    glorot = ap.Embedding(4, 3, init="glorot", seed=0, backend="numpy")
    assert glorot.config() == {"num_embeddings": 4, "embedding_dim": 3, "init": "glorot"}


def tiny_model(be: ap.Backend) -> ap.Sequential:
    return ap.Sequential(
        ap.Embedding(6, 4, seed=0, backend=be), ap.Flatten(), ap.Dense(12, 2, seed=1, backend=be)
    )


def data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 6, (32, 3))
    return x, (x[:, 0] < 3).astype(np.int64)


def test_train_step_lowers_the_loss(backend, rng):
    model = tiny_model(backend)
    x, y = data(rng)
    loss, opt = ap.SoftmaxCrossEntropy(), ap.Adam(model.parameters(), lr=0.05)
    xb, yb = backend.asarray(x), backend.asarray(y)
    first = float(host(backend, ap.train_step(model, loss, opt, xb, yb)))
    for _ in range(30):
        last = float(host(backend, ap.train_step(model, loss, opt, xb, yb)))
    assert last < 0.5 * first


@pytest.mark.parametrize("input_grad", [True, False])
def test_sequential_backward_passes_the_none_of_a_first_embedding_on(backend, rng, input_grad):
    model = tiny_model(backend)
    x, _ = data(rng)
    out = model.forward(backend.asarray(x))
    assert model.backward(backend.xp.ones_like(out), input_grad=input_grad) is None
    assert all(p.grad is not None for p in model.parameters())


def test_summary_runs_on_integer_indices(backend):
    summary = tiny_model(backend).summary((3,))
    assert [row[2] for row in summary.rows] == [(None, 3, 4), (None, 12), (None, 2)]
    assert summary.trainable == 6 * 4 + 12 * 2 + 2


@pytest.mark.parametrize("budget", [None, 256])  # resident, and streamed in chunks
def test_fit_evaluate_predict_keep_integer_x(backend, rng, budget):
    model = tiny_model(backend)
    x, y = data(rng)
    kw = {} if budget is None else {"max_device_bytes": budget}
    before = ap.evaluate(model, x, y, loss="softmax-ce")["loss"]
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=20, progress=None, **kw)
    assert ap.evaluate(model, x, y, loss="softmax-ce", **kw)["loss"] < before
    assert tuple(ap.predict(model, backend.asarray(x)).shape) == (32, 2)


@pytest.mark.parametrize("on_device", [False, True])  # a host scan, or one device read
def test_fit_checks_the_indices_up_front(backend, rng, on_device):
    model = tiny_model(backend)
    x, y = data(rng)
    place = backend.asarray if on_device else np.asarray
    kw = {"loss": "softmax-ce", "optimizer": "sgd", "epochs": 1, "progress": None}
    with pytest.raises(DTypeError, match=r"fit: x must hold integer indices .*Embedding"):
        ap.fit(model, place(x * 1.0), place(y), **kw)
    with pytest.raises(DataError, match=r"fit: x for Embedding\(6, 4\): index 6 at"):
        ap.fit(model, place(np.where(x == 5, 6, x)), place(y), **kw)


@pytest.mark.parametrize("target", ["numpy", "array_api_strict", "torch"])
def test_checkpoint_round_trip_and_to(backend, rng, target, tmp_path):
    model = tiny_model(backend)
    x, y = data(rng)
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, progress=None)
    path = tmp_path / "emb.npz"
    ap.save_checkpoint(model, path)
    loaded = ap.load_checkpoint(path, backend=target).model
    moved = model.to(target)
    want = model.state_dict()
    for other in (loaded, moved):
        got = other.state_dict()
        assert list(got) == list(want) == ["0.weight", "2.weight", "2.bias"]
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        np.testing.assert_allclose(
            other.backend.to_host(other.predict(x)),
            host(backend, model.predict(x)),
            rtol=1e-12,
            atol=1e-13,
        )
    assert loaded.layers[0].config() == {
        "num_embeddings": 6,
        "embedding_dim": 4,
        "init": "standard_normal",
    }
