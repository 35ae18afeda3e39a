"""Plain SGD folded into the weight-gradient GEMM by the optimizer (eq. 7a of docs/math.md).

The kernel ``sgd_xt_delta_update`` (one CBLAS GEMM with β = 1 on NumPy, unfused elsewhere)
against its portable definition; the CBLAS binding's refusals and its switch; and
``SGD(fused=...)``: the folded step gives the same weights as the unfolded one on every backend,
folds only when that is exactly what the optimizer would have done, and leaves every gradient
readable afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.backends.numpy import blas as numpy_blas
from arrayprop.backends.numpy import kernels as numpy_fast

DTYPES = ["float32", "float64"]
RTOL = {"float32": 2e-6, "float64": 1e-13}
needs_cblas = pytest.mark.skipif(
    numpy_blas.GEMM is None, reason=f"CBLAS binding {numpy_blas.status()}"
)


@pytest.fixture(autouse=True)
def fast_paths_on():
    with kernels.use_portable(False):
        yield


def _arrays(rng, dtype, n=9, k=6, m=5):
    x, d, w = (rng.standard_normal(s).astype(dtype) for s in ((n, k), (n, m), (k, m)))
    return x, d, w


# -- the kernel ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cblas", [True, False], ids=["cblas", "numpy-fallback"])
def test_sgd_xt_delta_update_matches_portable_in_place(dtype, cblas, rng, monkeypatch):
    if cblas and numpy_blas.GEMM is None:
        pytest.skip(f"CBLAS binding {numpy_blas.status()}")
    if cblas:
        monkeypatch.setattr(numpy_fast, "FUSE_MIN_WEIGHTS", 0)  # these small arrays too
    else:
        monkeypatch.setattr(numpy_blas, "GEMM", None)
    be = ap.get_backend("numpy", dtype=dtype)
    x, d, w = _arrays(rng, dtype)
    saved_x, saved_d = x.copy(), d.copy()
    with kernels.use_portable():
        want_w = kernels.sgd_xt_delta_update(be, w, x, d, 0.3)
    w_id = id(w)
    got_w = kernels.sgd_xt_delta_update(be, w, x, d, 0.3)
    assert id(got_w) == w_id  # the optimizer-owned buffer, updated
    assert got_w.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got_w, want_w, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_array_equal(x, saved_x)
    np.testing.assert_array_equal(d, saved_d)


def test_portable_sgd_xt_delta_update_is_the_definition(backend, rng):
    """W − η Xᵀδ, checked against NumPy float64 on every backend."""
    x, d, w = _arrays(rng, "float64")
    be = ap.get_backend(backend.name, device=backend.device, dtype="float64")
    with kernels.use_portable():
        got_w = kernels.sgd_xt_delta_update(be, be.asarray(w), be.asarray(x), be.asarray(d), 0.25)
    np.testing.assert_allclose(be.to_host(got_w), w - 0.25 * x.T @ d, rtol=1e-12)


@needs_cblas
@pytest.mark.parametrize("dtype", DTYPES)
def test_cblas_product_with_odd_sizes(dtype, rng):
    for n, k, m in [(1, 1, 1), (1, 7, 3), (13, 1, 2), (64, 33, 17), (3, 100, 1)]:
        x, d, w = _arrays(rng, dtype, n, k, m)
        want = w - 0.5 * (x.astype("float64").T @ d.astype("float64"))
        assert numpy_blas.add_xt_delta(w, x, d, -0.5)
        tol = 1e-5 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(w, want, rtol=tol * n, atol=tol * n)


@needs_cblas
@pytest.mark.parametrize(
    "case",
    ["w-not-contiguous", "w-read-only", "mixed-dtype", "x-strided", "w-aliases-x", "float16"],
)
def test_cblas_refuses_what_it_cannot_take_and_leaves_w_alone(case, rng):
    x, d, w = _arrays(rng, "float32", 6, 6, 6)
    if case == "w-not-contiguous":
        w = np.asfortranarray(w)
    elif case == "w-read-only":
        w.flags.writeable = False
    elif case == "mixed-dtype":
        x = x.astype("float64")
    elif case == "x-strided":
        x = np.repeat(x, 2, axis=1)[:, ::2]
    elif case == "w-aliases-x":
        x = w
    elif case == "float16":
        x, d, w = (a.astype("float16") for a in (x, d, w))
    saved = w.copy()
    assert not numpy_blas.add_xt_delta(w, x, d, -0.5)
    np.testing.assert_array_equal(w, saved)


@needs_cblas
@pytest.mark.parametrize("shape", [(784, 128), (128, 10)])
def test_large_weights_take_the_cblas_call_and_small_ones_numpy(shape, rng, monkeypatch):
    calls = []
    real = numpy_blas.add_xt_delta
    monkeypatch.setattr(numpy_blas, "add_xt_delta", lambda *a: calls.append(a[0].shape) or real(*a))
    be = ap.get_backend("numpy", dtype="float32")
    x, d, w = _arrays(rng, "float32", 16, *shape)
    want = w - 0.1 * (x.T @ d)
    got = kernels.sgd_xt_delta_update(be, w, x, d, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    fused = shape[0] * shape[1] >= numpy_fast.FUSE_MIN_WEIGHTS
    assert calls == ([shape] if fused else [])


@pytest.mark.parametrize("case", ["w-not-contiguous", "x-strided"])
def test_unfused_fallback_still_updates_arrays_cblas_refuses(case, rng):
    be = ap.get_backend("numpy", dtype="float32")
    x, d, w = _arrays(rng, "float32", 8, 200, 100)  # above FUSE_MIN_WEIGHTS
    if case == "w-not-contiguous":
        w = np.asfortranarray(w)
    else:
        x = np.repeat(x, 2, axis=1)[:, ::2]
    want = w - 0.1 * (x.T @ d)
    got = kernels.sgd_xt_delta_update(be, w, x, d, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cblas_switch_and_reasons(monkeypatch):
    monkeypatch.setenv("ARRAYPROP_CBLAS", "0")
    assert numpy_blas._load() == (None, "off (ARRAYPROP_CBLAS=0)")
    monkeypatch.delenv("ARRAYPROP_CBLAS")
    monkeypatch.setattr(numpy_blas, "_library_paths", lambda: [])
    funcs, why = numpy_blas._load()
    assert funcs is None and "no OpenBLAS" in why


def test_a_binding_that_computes_wrongly_is_not_trusted(monkeypatch):
    """The self-test compares with numpy.matmul: a gemm that does nothing is refused."""
    monkeypatch.delenv("ARRAYPROP_CBLAS", raising=False)
    monkeypatch.setattr(numpy_blas, "_library_paths", lambda: ["/fake/libopenblas.so"])
    nothing = {np.dtype(t): (lambda *args: None) for t in ("float32", "float64")}
    monkeypatch.setattr(numpy_blas, "_bind", lambda path: nothing)
    funcs, why = numpy_blas._load()
    assert funcs is None and "self-test" in why and "libopenblas.so" in why


def test_a_library_without_the_symbol_is_skipped(monkeypatch, tmp_path):
    monkeypatch.delenv("ARRAYPROP_CBLAS", raising=False)
    monkeypatch.setattr(numpy_blas, "_library_paths", lambda: [str(tmp_path / "missing.so")])
    funcs, why = numpy_blas._load()
    assert funcs is None and "symbol" in why


# -- SGD(fused=...) ------------------------------------------------------------------------------


def _pair(backend, sizes=(6, 8, 5, 3), **opt):
    models = [ap.mlp(list(sizes), seed=4, backend=backend) for _ in range(2)]
    fused = ap.SGD(models[0].parameters(), lr=0.2, fused="auto", **opt)
    plain = ap.SGD(models[1].parameters(), lr=0.2, fused=False, **opt)
    return models, (fused, plain)


def _data(rng, n=16, d=6, k=3):
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def _spy_fold(monkeypatch):
    calls = []
    real = kernels.sgd_xt_delta_update
    monkeypatch.setattr(
        kernels, "sgd_xt_delta_update", lambda be, w, *a: calls.append(w.shape) or real(be, w, *a)
    )
    return calls


def test_folded_and_separate_steps_reach_the_same_weights(backend, rng, monkeypatch):
    # 160 x 120 is above FUSE_MIN_WEIGHTS (the CBLAS call on NumPy), 6 x 160 and 120 x 3 below.
    (fused, plain), (o1, o2) = _pair(backend, sizes=(6, 160, 120, 3))
    loss = ap.SoftmaxCrossEntropy()
    x, y = _data(rng)
    x, y = backend.asarray(x), backend.asarray(y)
    calls = _spy_fold(monkeypatch)
    for _ in range(5):
        v1 = ap.train_step(fused, loss, o1, x, y)
        v2 = ap.train_step(plain, loss, o2, x, y)
        assert float(backend.to_host(v1)) == pytest.approx(float(backend.to_host(v2)), rel=1e-5)
    for p, q in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_allclose(
            backend.to_host(p.data), backend.to_host(q.data), rtol=1e-5, atol=1e-6
        )
        # Every gradient is readable after the step, folded or not: the same numbers.
        np.testing.assert_allclose(
            backend.to_host(p.grad), backend.to_host(q.grad), rtol=1e-4, atol=1e-6
        )
    assert o1.steps == o2.steps == 5
    folded = kernels.fused_sgd(backend)
    assert folded == (backend.name == "numpy" and numpy_blas.GEMM is not None)
    assert o1.folds() == folded and not o2.folds()
    # The fold runs once per Dense weight and step where the backend folds, never elsewhere.
    assert calls == ([(6, 160), (160, 120), (120, 3)] * 5 if folded else [])


def test_fused_true_folds_on_every_backend_with_the_portable_kernel(backend, rng, monkeypatch):
    (fused, plain), _ = _pair(backend)
    o1 = ap.SGD(fused.parameters(), lr=0.2, fused=True)
    o2 = ap.SGD(plain.parameters(), lr=0.2, fused=False)
    calls = _spy_fold(monkeypatch)
    x, y = _data(rng)
    for _ in range(3):
        ap.train_step(fused, ap.SoftmaxCrossEntropy(), o1, x, y)
        ap.train_step(plain, ap.SoftmaxCrossEntropy(), o2, x, y)
    assert len(calls) == 3 * 3
    for p, q in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_allclose(
            backend.to_host(p.data), backend.to_host(q.data), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("variant", ["momentum", "weight_decay", "adam", "keep_grads"])
def test_steps_that_are_not_plain_sgd_never_fold(variant, rng, monkeypatch):
    be = ap.get_backend("numpy", dtype="float64")
    model = ap.mlp([6, 200, 100, 3], seed=1, backend=be)  # 200 x 100: above FUSE_MIN_WEIGHTS
    params = model.parameters()
    opt = {
        "momentum": lambda: ap.SGD(params, lr=0.1, momentum=0.9),
        "weight_decay": lambda: ap.SGD(params, lr=0.1, weight_decay=0.01),
        "adam": lambda: ap.Adam(params, lr=0.1),
        "keep_grads": lambda: ap.SGD(params, lr=0.1),
    }[variant]()
    calls = _spy_fold(monkeypatch)
    x, y = _data(rng)
    ap.train_step(model, ap.SoftmaxCrossEntropy(), opt, x, y, keep_grads=variant == "keep_grads")
    assert calls == []
    assert all(p.grad is not None for p in params)


def test_a_frozen_layer_is_not_updated_by_the_fold(rng):
    be = ap.get_backend("numpy", dtype="float64")
    model = ap.mlp([6, 200, 100, 3], seed=1, backend=be)
    params = model.parameters()
    opt = ap.SGD(params[2:], lr=0.1)  # the first Dense layer is frozen
    frozen = [be.to_host(p.data).copy() for p in params[:2]]
    x, y = _data(rng)
    ap.train_step(model, ap.SoftmaxCrossEntropy(), opt, x, y)
    for p, w in zip(params[:2], frozen, strict=True):
        np.testing.assert_array_equal(be.to_host(p.data), w)
    assert all(p.grad is not None for p in params)


def test_fused_true_needs_plain_sgd():
    params = ap.mlp([2, 3], seed=0).parameters()
    with pytest.raises(ValueError, match="fused=True needs plain SGD"):
        ap.SGD(params, lr=0.1, momentum=0.9, fused=True)
    with pytest.raises(ValueError, match="fused must be True, False or 'auto'"):
        ap.SGD(params, lr=0.1, fused="yes")


def test_the_fold_uses_the_scheduled_learning_rate(rng):
    be = ap.get_backend("numpy", dtype="float64")
    (fused, plain), (o1, o2) = _pair(be, sizes=(6, 200, 100, 3))
    loss = ap.SoftmaxCrossEntropy()
    x, y = _data(rng)
    for lr in (0.5, 0.05, 0.005):
        o1.lr = o2.lr = lr
        ap.train_step(fused, loss, o1, x, y)
        ap.train_step(plain, loss, o2, x, y)
    for p, q in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)


def test_fit_folds_too(rng, monkeypatch):
    be = ap.get_backend("numpy", dtype="float32")
    model = ap.mlp([6, 200, 100, 3], seed=1, backend=be)
    calls = _spy_fold(monkeypatch)
    x, y = _data(rng, n=64)
    ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=16, progress=None)
    assert len(calls) == (3 * 4 if kernels.fused_sgd(be) else 0)


# -- C += A B into a view (the stride-1 convolution's input gradient) ----------------------------


@needs_cblas
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_product_into_column_slices(dtype, rng):
    """C ← A B + C where C is a column slice of a wider array (rows contiguous, leading
    dimension larger than its width), as the shifted GEMMs of a convolution write; the rest of
    the wider array is untouched."""
    for m, k, n, offset, extra in [(1, 1, 1, 0, 0), (3, 5, 7, 2, 4), (6, 16, 100, 13, 9)]:
        big = rng.standard_normal((m, offset + n + extra)).astype(dtype)
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        want = big.astype("float64")
        want[:, offset : offset + n] += a.astype("float64") @ b.astype("float64")
        assert numpy_blas.add_product(big[:, offset : offset + n], a, b)
        tol = 1e-5 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(big, want, rtol=tol * k, atol=tol * k)


@needs_cblas
@pytest.mark.parametrize(
    "case", ["c-read-only", "c-strided-columns", "mixed-dtype", "c-aliases-a", "shape-mismatch"]
)
def test_add_product_refuses_what_it_cannot_take(case, rng):
    a = rng.standard_normal((4, 3)).astype("float32")
    b = rng.standard_normal((3, 5)).astype("float32")
    c = rng.standard_normal((4, 5)).astype("float32")
    if case == "c-read-only":
        c.flags.writeable = False
    elif case == "c-strided-columns":
        c = rng.standard_normal((4, 10)).astype("float32")[:, ::2]
    elif case == "mixed-dtype":
        b = b.astype("float64")
    elif case == "c-aliases-a":
        c = np.zeros((4, 8), dtype="float32")
        a = c[:, :3]
        c = c[:, 3:8]
    elif case == "shape-mismatch":
        b = b[:, :4]
    before = c.copy()
    assert not numpy_blas.add_product(c, a, b)
    np.testing.assert_array_equal(c, before)
