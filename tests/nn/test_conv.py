"""Conv2D, MaxPool2D and AvgPool2D: gradcheck, PyTorch autograd, a small CNN on the digits,
checkpoints, ``.to()``, summary and bad input (eqs. 29–36 of docs/math.md)."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.data import load_digits
from arrayprop.errors import DTypeError, ShapeError
from helpers import host

torch = pytest.importorskip("torch")
F = torch.nn.functional


def random_conv(rng: np.random.Generator) -> tuple[dict, tuple[int, ...]]:
    """Random Conv2D arguments (square or rectangular kernels 1–3, strides 1–2, paddings 0–2,
    each an int or a pair) and an input shape (odd sizes, batch 1 included) that fits a
    window."""
    kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
    if rng.random() < 0.3:
        kw = kh
    sh, sw = (int(s) for s in rng.integers(1, 3, size=2))
    ph, pw = (int(p) for p in rng.integers(0, 3, size=2))
    n, c, o = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
    h = int(rng.integers(max(1, kh - 2 * ph), 8))
    w = int(rng.integers(max(1, kw - 2 * pw), 8))
    kwargs = {
        "in_channels": c,
        "out_channels": o,
        "kernel_size": kh if kh == kw else (kh, kw),
        "stride": sh if sh == sw else (sh, sw),
        "padding": ph if ph == pw else (ph, pw),
    }
    return kwargs, (n, c, h, w)


def random_pool(rng: np.random.Generator) -> tuple[tuple, tuple, tuple[int, ...]]:
    """Random pooling kernel, stride and input shape (at least one window)."""
    k = tuple(int(v) for v in rng.integers(1, 4, size=2))
    s = tuple(int(v) for v in rng.integers(1, 3, size=2))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    h, w = int(rng.integers(k[0], 8)), int(rng.integers(k[1], 8))
    return k, s, (n, c, h, w)


def conv_with_weights(kwargs: dict, be: ap.Backend, rng: np.random.Generator):
    k = kwargs["kernel_size"]
    kh, kw = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((kwargs["out_channels"], kwargs["in_channels"], kh, kw))
    b = rng.standard_normal(kwargs["out_channels"])
    return ap.Conv2D(**kwargs, weight=w, bias=b, backend=be), w, b


# -- gradcheck ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_conv_gradcheck(backend, seed):
    rng = np.random.default_rng(seed)
    kwargs, shape = random_conv(rng)
    layer, _, _ = conv_with_weights(kwargs, backend, rng)
    errors = ap.gradcheck(layer, rng.standard_normal(shape))
    assert max(errors.values()) < 1e-6, (kwargs, shape, errors)
    assert set(errors) == {"weight", "bias", "input"}


@pytest.mark.parametrize("pool", [ap.MaxPool2D, ap.AvgPool2D])
@pytest.mark.parametrize("seed", range(4))
def test_pool_gradcheck(backend, pool, seed):
    rng = np.random.default_rng(seed)
    k, s, shape = random_pool(rng)
    # A permutation scaled: distinct values, at least 0.1 apart, so no window has a tie that a
    # central difference (step ~1e-6) could cross.
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1
    layer = pool(k, s)
    layer.backend = backend
    errors = ap.gradcheck(layer, x)
    assert max(errors.values()) < 1e-6, (k, s, shape, errors)


def test_gradcheck_in_a_cnn(backend, rng):
    model = ap.Sequential(
        ap.Conv2D(2, 3, 3, padding=1, seed=0, backend=backend),
        ap.Tanh(),
        ap.AvgPool2D(2),
        ap.Conv2D(3, 2, (2, 1), stride=(1, 2), seed=1, backend=backend),
        ap.MaxPool2D((1, 2), stride=1),
        ap.Flatten(),
        ap.Dense(4, 3, seed=2, backend=backend),
    )
    x, y = rng.standard_normal((2, 2, 6, 7)), rng.integers(0, 3, 2)
    errors = ap.gradcheck(model, x, y, loss=ap.SoftmaxCrossEntropy())
    assert max(errors.values()) < 1e-6, errors


# -- PyTorch autograd -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_conv_agrees_with_torch(backend, seed):
    rng = np.random.default_rng(100 + seed)
    kwargs, shape = random_conv(rng)
    layer, w, b = conv_with_weights(kwargs, backend, rng)
    x = rng.standard_normal(shape)
    z = layer.forward(backend.asarray(x))
    g = rng.standard_normal(tuple(z.shape))
    gx = layer.backward(backend.asarray(g))

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    zt = F.conv2d(xt, wt, bt, stride=kwargs["stride"], padding=kwargs["padding"])
    zt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(host(backend, z), zt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(host(backend, gx), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(host(backend, layer.weight.grad), wt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(host(backend, layer.bias.grad), bt.grad.numpy(), atol=1e-10)


@pytest.mark.parametrize(
    ("pool", "ref"), [(ap.MaxPool2D, F.max_pool2d), (ap.AvgPool2D, F.avg_pool2d)]
)
@pytest.mark.parametrize("seed", range(4))
def test_pool_agrees_with_torch(backend, pool, ref, seed):
    rng = np.random.default_rng(200 + seed)
    k, s, shape = random_pool(rng)
    x = rng.standard_normal(shape)
    layer = pool(k, s)
    z = layer.forward(backend.asarray(x))
    g = rng.standard_normal(tuple(z.shape))
    gx = layer.backward(backend.asarray(g))
    xt = torch.tensor(x, requires_grad=True)
    zt = ref(xt, k, s)
    zt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(host(backend, z), zt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(host(backend, gx), xt.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_default_pool_stride_is_the_kernel(backend):
    x = backend.asarray(np.arange(2 * 3 * 4 * 6, dtype=np.float64).reshape(2, 3, 4, 6))
    assert tuple(ap.MaxPool2D(2).forward(x).shape) == (2, 3, 2, 3)
    assert tuple(ap.AvgPool2D((2, 3)).forward(x).shape) == (2, 3, 2, 2)


def test_max_pool_ties_go_to_the_first_entry(backend):
    pool = ap.MaxPool2D(2)
    pool.forward(backend.asarray(np.ones((1, 1, 2, 2))))
    gx = host(backend, pool.backward(backend.asarray(np.full((1, 1, 1, 1), 3.0))))
    np.testing.assert_array_equal(gx[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_weight_layout_and_init_follow_pytorch(backend):
    layer = ap.Conv2D(3, 5, (2, 4), seed=0, backend=backend)
    assert tuple(layer.weight.data.shape) == (5, 3, 2, 4)
    w = host(backend, layer.weight.data)
    assert 0.5 < w.std() * np.sqrt(3 * 2 * 4 / 2) < 1.5  # He: std sqrt(2 / fan_in)
    np.testing.assert_array_equal(host(backend, layer.bias.data), np.zeros(5))
    again = ap.Conv2D(3, 5, (2, 4), seed=0, backend=backend)
    np.testing.assert_array_equal(host(backend, again.weight.data), w)


def test_gemm_flops_and_summary(backend):
    model = ap.Sequential(
        ap.Conv2D(1, 4, 3, padding=1, backend=backend),
        ap.ReLU(),
        ap.MaxPool2D(2),
        ap.Flatten(),
        ap.Dense(64, 10, backend=backend),
    )
    summary = model.summary(input_shape=(1, 8, 8))
    assert summary.gemm_flops == 2 * 1 * 9 * 4 * 8 * 8 + 2 * 64 * 10
    text = str(summary)
    for shape in ("(None, 4, 8, 8)", "(None, 4, 4, 4)", "(None, 64)", "(None, 10)"):
        assert shape in text, text


# -- training, checkpoints, .to() ---------------------------------------------------------------


def small_cnn(be: ap.Backend) -> ap.Sequential:
    return ap.Sequential(
        ap.Conv2D(1, 4, 3, padding=1, seed=0, backend=be),
        ap.ReLU(),
        ap.MaxPool2D(2),
        ap.Flatten(),
        ap.Dense(64, 10, seed=1, backend=be),
    )


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = load_digits()
    return x[:300].astype(np.float64).reshape(-1, 1, 8, 8), y[:300]


def test_small_cnn_trains_on_digits(backend, digits):
    x, y = digits
    model = small_cnn(backend)
    history = ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=ap.Adam(model.parameters(), lr=0.01),
        epochs=4,
        batch_size=32,
        progress=False,
    )
    losses = history.history["loss"] if hasattr(history, "history") else history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("target", ["numpy", "array_api_strict", "torch"])
def test_checkpoint_round_trip_and_to(backend, target, digits, tmp_path):
    x, y = digits
    model = ap.Sequential(
        ap.Conv2D(1, 3, (3, 2), stride=(1, 2), padding=(1, 0), seed=0, backend=backend),
        ap.ReLU(),
        ap.AvgPool2D(2, stride=1),
        ap.MaxPool2D((2, 1)),
        ap.Flatten(),
        ap.Dense(3 * 3 * 3, 10, seed=1, backend=backend),
    )
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=1, progress=False)
    path = tmp_path / "cnn.npz"
    ap.save_checkpoint(model, path)
    loaded = ap.load_checkpoint(path, backend=target).model
    moved = model.to(target)
    want = host(backend, model.predict(x[:50]))
    for other in (loaded, moved):
        assert [type(a) for a in other.layers] == [type(a) for a in model.layers]
        got = np.asarray(other.backend.to_host(other.predict(x[:50])))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert loaded.layers[0].config() == model.layers[0].config()


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (lambda be: ap.Conv2D(2, 3, 3, backend=be), (4, 2, 5), r"\(N, 2, H, W\), got \(4, 2, 5\)"),
        (lambda be: ap.Conv2D(2, 3, 3, backend=be), (4, 3, 5, 5), r"\(N, 2, H, W\)"),
        (lambda be: ap.Conv2D(2, 3, 3, backend=be), (4, 2, 2, 5), "smaller than the 3x3 kernel"),
        (lambda be: ap.MaxPool2D(3), (1, 1, 2, 5), "smaller than the 3x3 kernel"),
        (lambda be: ap.AvgPool2D(2), (1, 4), r"\(N, C, H, W\)"),
    ],
)
def test_wrong_shapes_are_refused(backend, layer, shape, message):
    with pytest.raises(ShapeError, match=message):
        layer(backend).forward(backend.asarray(np.zeros(shape)))


def test_dtype_and_gradient_checks(backend, backend32):
    layer = ap.Conv2D(1, 2, 2, backend=backend)
    with pytest.raises(DTypeError, match="dtype"):
        layer.forward(backend32.asarray(np.zeros((1, 1, 3, 3))))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(backend.asarray(np.zeros((1, 2, 2, 2))))
    layer.forward(backend.asarray(np.zeros((1, 1, 3, 3))))
    with pytest.raises(ShapeError, match=r"\(1, 2, 2, 2\)"):
        layer.backward(backend.asarray(np.zeros((1, 2, 3, 3))))
    pool = ap.MaxPool2D(2)
    pool.forward(backend.asarray(np.zeros((1, 1, 4, 4))))
    with pytest.raises(ShapeError, match=r"\(1, 1, 2, 2\)"):
        pool.backward(backend.asarray(np.zeros((1, 1, 4, 4))))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ap.Conv2D(0, 2, 3), "in_channels"),
        (lambda: ap.Conv2D(1, 2, 0), "kernel_size"),
        (lambda: ap.Conv2D(1, 2, (2, 2, 2)), "kernel_size"),
        (lambda: ap.Conv2D(1, 2, 2, stride=0), "stride"),
        (lambda: ap.Conv2D(1, 2, 2, padding=-1), "padding"),
        (lambda: ap.MaxPool2D(2, stride=(1, 0)), "stride"),
        (lambda: ap.AvgPool2D(1.5), "kernel_size"),
    ],
)
def test_constructor_arguments_are_checked(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_exact_weights_are_checked_and_copied(backend):
    w = np.ones((2, 1, 3, 3))
    layer = ap.Conv2D(1, 2, 3, weight=w, backend=backend)
    w[...] = 5
    assert float(host(backend, layer.weight.data).max()) == 1.0
    with pytest.raises(ShapeError, match=r"weight must have shape \(2, 1, 3, 3\)"):
        ap.Conv2D(1, 2, 3, weight=np.ones((2, 3, 3, 1)), backend=backend)
    with pytest.raises(ShapeError, match=r"bias must have shape \(2,\)"):
        ap.Conv2D(1, 2, 3, bias=np.ones(3), backend=backend)


# -- NumPy fast paths (strided-view im2col, in-place col2im, pooling) vs the portable ones -------


def _fast_and_portable(fn):
    """``fn()`` with the fast paths on, then with the portable kernels."""
    with ap.kernels.use_portable(False):
        fast = fn()
    with ap.kernels.use_portable(True):
        slow = fn()
    return fast, slow


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_kernels_fast_match_portable(seed, dtype):
    """The NumPy im2col (one copy from a strided view) and col2im (in-place adds) equal the
    portable ones on random shapes, strides, paddings and non-contiguous input."""
    rng = np.random.default_rng(seed)
    kwargs, shape = random_conv(rng)
    be = ap.get_backend("numpy", dtype=dtype)
    k, s, p = (
        ap.nn.conv.pair("t", name, kwargs[name], minimum=0)
        for name in ("kernel_size", "stride", "padding")
    )
    # A transposed view, as a Conv2D output (a permuted GEMM result) is.
    x = np.transpose(rng.standard_normal(shape[::-1]).astype(dtype), (3, 2, 1, 0))
    x = (
        np.ascontiguousarray(x)
        if seed % 2
        else np.swapaxes(np.ascontiguousarray(np.swapaxes(x, 1, 2)), 1, 2)
    )
    before = x.copy()
    fast, slow = _fast_and_portable(lambda: ap.kernels.conv_cols(be, x, k, s, p))
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(x, before)  # x is only read
    assert not np.shares_memory(fast, x)
    g = rng.standard_normal(slow.shape).astype(dtype)
    fast, slow = _fast_and_portable(lambda: ap.kernels.conv_col2im(be, g, shape, k, s, p))
    assert fast.shape == slow.shape == shape
    np.testing.assert_allclose(fast, slow, rtol=1e-6 if dtype == "float32" else 1e-14, atol=0)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv2d_fast_matches_portable(seed, dtype):
    """NumPy's conv2d / conv2d_grad (per-sample GEMMs; for stride 1 the input gradient by
    shifted flat GEMMs) equal the portable im2col GEMM on random shapes, strides, paddings and
    non-contiguous input and gradient, with and without the input gradient."""
    rng = np.random.default_rng(100 + seed)
    kwargs, shape = random_conv(rng)
    if seed % 3 == 0:  # the stride-1 path with several channels and padding
        kwargs = {**kwargs, "stride": 1}
    be = ap.get_backend("numpy", dtype=dtype)
    k, s, p = (
        ap.nn.conv.pair("t", name, kwargs[name], minimum=0)
        for name in ("kernel_size", "stride", "padding")
    )
    out_c = int(rng.integers(1, 5))
    x = np.swapaxes(np.ascontiguousarray(np.swapaxes(rng.standard_normal(shape), 2, 3)), 2, 3)
    x = x.astype(dtype)
    w = rng.standard_normal((out_c, shape[1], *k)).astype(dtype)
    b = rng.standard_normal(out_c).astype(dtype)
    before = x.copy()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    (zf, sf), (zs, ss) = _fast_and_portable(lambda: ap.kernels.conv2d(be, x, w, b, k, s, p))
    np.testing.assert_allclose(zf, zs, **tol)
    np.testing.assert_array_equal(x, before)
    assert zf.dtype == zs.dtype == np.dtype(dtype)
    g = np.transpose(rng.standard_normal(zs.shape[::-1]).astype(dtype), (3, 2, 1, 0))
    for input_grad in (True, False):
        fast = ap.kernels.conv2d_grad(be, g, sf, w, shape, k, s, p, input_grad)
        with ap.kernels.use_portable(True):
            slow = ap.kernels.conv2d_grad(be, g, ss, w, shape, k, s, p, input_grad)
        for f, sl in zip(fast[1:], slow[1:], strict=True):
            assert f.shape == sl.shape and f.dtype == sl.dtype
            np.testing.assert_allclose(f, sl, **tol)
        if input_grad:
            assert fast[0].shape == slow[0].shape == shape
            np.testing.assert_allclose(fast[0], slow[0], **tol)
        else:
            assert fast[0] is None and slow[0] is None


@pytest.mark.parametrize("seed", range(12))
def test_pool_kernels_fast_match_portable(seed):
    """Max / average pooling and their gradients: fast equals portable, ties included; every
    third seed 2x2 windows with stride 2 (NumPy's special case), odd sizes included."""
    rng = np.random.default_rng(seed)
    k, s, shape = random_pool(rng)
    if seed % 3 == 0:
        k = s = (2, 2)
        shape = (*shape[:2], int(rng.integers(2, 8)), int(rng.integers(2, 8)))
    be = ap.get_backend("numpy", dtype="float64")
    # Rounded values: many ties, which must go to the same (first) entry on both paths.
    x = np.round(rng.standard_normal(shape) * 2) / 2
    (yf, af), (ys, as_) = _fast_and_portable(lambda: ap.kernels.max_pool(be, x, k, s))
    np.testing.assert_array_equal(yf, ys)
    np.testing.assert_array_equal(af, as_)
    g = rng.standard_normal(ys.shape)
    fast, slow = _fast_and_portable(lambda: ap.kernels.max_pool_grad(be, g, as_, shape, k, s))
    np.testing.assert_allclose(fast, slow, rtol=1e-14, atol=0)
    fast, slow = _fast_and_portable(lambda: ap.kernels.avg_pool(be, x, k, s))
    np.testing.assert_allclose(fast, slow, rtol=1e-14, atol=1e-15)
    fast, slow = _fast_and_portable(lambda: ap.kernels.avg_pool_grad(be, g, shape, k, s))
    np.testing.assert_allclose(fast, slow, rtol=1e-14, atol=0)


def test_first_conv_skips_the_input_gradient(backend, rng, monkeypatch):
    """input_grad=False (the first layer while training) returns None and sets the same
    parameter gradients; train_step takes that path (no col2im of the data)."""
    kwargs, shape = random_conv(rng)
    conv, _, _ = conv_with_weights(kwargs, backend, rng)
    x = backend.asarray(rng.standard_normal(shape))
    z = conv.forward(x)
    g = backend.asarray(rng.standard_normal(tuple(z.shape)))
    assert conv.backward(g) is not None
    dw, db = host(backend, conv.weight.grad), host(backend, conv.bias.grad)
    conv.forward(x)
    assert conv.backward(g, input_grad=False) is None
    np.testing.assert_allclose(host(backend, conv.weight.grad), dw, rtol=1e-12)
    np.testing.assert_allclose(host(backend, conv.bias.grad), db, rtol=1e-12)
    calls = []
    original = ap.kernels.conv2d_grad
    monkeypatch.setattr(ap.kernels, "conv2d_grad", lambda *a: calls.append(a[-1]) or original(*a))
    model = ap.Sequential(conv, ap.Flatten())
    y = backend.asarray(np.zeros((shape[0], int(np.prod(z.shape[1:])))))
    ap.train_step(model, ap.MSE(), ap.SGD(model.parameters(), lr=1e-3), x, y)
    assert calls == [False]  # input_grad=False: no input gradient of the data
    conv.forward(x)
    conv.backward(g)
    assert calls == [False, True]  # the patch does see a call that wants it


@pytest.mark.parametrize("seed", range(4))
def test_conv_workspace_reuse_is_invisible(seed):
    """NumPy's Conv2D refills the last step's spent im2col matrix (kernels.conv2d_workspace):
    the next steps' outputs and gradients equal a fresh layer's, with a changed batch size (a
    workspace of the wrong size is not used) and after an eval-style forward without backward."""
    rng = np.random.default_rng(200 + seed)
    be = ap.get_backend("numpy", dtype="float64")
    kwargs, shape = random_conv(rng)
    assert ap.kernels.conv2d_workspace(be)
    conv, w, b = conv_with_weights(kwargs, be, rng)
    shapes = [shape, shape, (shape[0] + 1, *shape[1:]), shape]
    spare = None
    for step, s in enumerate(shapes):
        x = rng.standard_normal(s)
        fresh = ap.Conv2D(**kwargs, weight=w, bias=b, backend=be)
        z, zf = conv.forward(x), fresh.forward(x)
        if step == 1:
            assert np.shares_memory(conv._cache[0], spare)  # the spent matrix was refilled
        np.testing.assert_array_equal(z, zf)
        g = rng.standard_normal(z.shape)
        np.testing.assert_array_equal(conv.backward(g), fresh.backward(g))
        np.testing.assert_array_equal(conv.weight.grad, fresh.weight.grad)
        np.testing.assert_array_equal(conv.bias.grad, fresh.bias.grad)
        spare = conv._spare
        assert spare is not None
        if step == 2:
            conv.forward(x)  # a forward without backward leaves nothing spare
            assert conv._spare is None
    conv.clear_cache()
    assert conv._spare is None
