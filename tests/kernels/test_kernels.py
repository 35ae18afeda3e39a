"""Kernels: every NumPy fast path against the portable reference, buffers, and numerics.

The fast paths are reached through the dispatching functions (``kernels.activation(be, ...)``)
on the numpy backend; ``kernels.use_portable()`` switches the same calls to the Array API
reference. Extreme-input numerics run on every backend (warnings are errors under pytest).
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import kernels
from helpers import (
    host,
    np_activation,
    np_activation_derivative,
    np_softmax_rows,
)

KINDS = kernels.ACTIVATIONS
DTYPES = ["float32", "float64"]
ALPHA = 0.07
#: Relative tolerance of fast vs portable: the same operations, so equal up to rounding.
RTOL = {"float32": 1e-6, "float64": 1e-14}


@pytest.fixture(autouse=True)
def fast_paths_on():
    """Fast paths on by default here, even in a run with ARRAYPROP_KERNELS=portable."""
    with kernels.use_portable(False):
        yield


def inputs(rng: np.random.Generator, dtype: str, shape=(7, 5)) -> np.ndarray:
    """Random values with exact zeros and a few large magnitudes mixed in."""
    z = rng.standard_normal(shape) * 3.0
    z[0, 0], z[1, 1], z[2, 2], z[3, 3] = 0.0, 40.0, -40.0, -0.0
    return z.astype(dtype)


# -- NumPy fast paths vs the portable reference --------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_fast_matches_portable_and_leaves_arguments_alone(dtype, rng):
    be = ap.get_backend("numpy", dtype=dtype)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((6, 4), (4, 3), (3,)))
    saved = [a.copy() for a in (x, w, b)]
    fast = kernels.linear(be, x, w, b)
    with kernels.use_portable():
        port = kernels.linear(be, x, w, b)
    assert fast.dtype == port.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast, port, rtol=RTOL[dtype], atol=0)
    for a, s in zip((x, w, b), saved, strict=True):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_activation_fast_matches_portable(kind, dtype, inplace, rng):
    be = ap.get_backend("numpy", dtype=dtype)
    z = inputs(rng, dtype)
    z_fast, z_port = z.copy(), z.copy()
    fast = kernels.activation(be, kind, z_fast, ALPHA, inplace=inplace)
    with kernels.use_portable():
        port = kernels.activation(be, kind, z_port, ALPHA, inplace=inplace)
    assert fast.dtype == port.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast, port, rtol=RTOL[dtype], atol=0)
    np.testing.assert_array_equal(z_port, z)  # the portable path never writes
    if not inplace:
        np.testing.assert_array_equal(z_fast, z)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_activation_grad_fast_matches_portable(kind, dtype, inplace, rng):
    be = ap.get_backend("numpy", dtype=dtype)
    with kernels.use_portable():
        a = kernels.activation(be, kind, inputs(rng, dtype), ALPHA)
    g = rng.standard_normal(a.shape).astype(dtype)
    a_saved, g_fast, g_port = a.copy(), g.copy(), g.copy()
    fast = kernels.activation_grad(be, kind, a, g_fast, ALPHA, inplace=inplace)
    with kernels.use_portable():
        port = kernels.activation_grad(be, kind, a, g_port, ALPHA, inplace=inplace)
    assert fast.dtype == port.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast, port, rtol=RTOL[dtype], atol=0)
    np.testing.assert_array_equal(a, a_saved)  # the cached output is read, never written
    np.testing.assert_array_equal(g_port, g)
    if not inplace:
        np.testing.assert_array_equal(g_fast, g)


@pytest.mark.parametrize(
    ("what", "kind"),
    [("forward", "relu"), ("forward", "tanh")]
    + [("backward", kind) for kind in ("relu", "sigmoid", "tanh")],
)
def test_inplace_fast_paths_reuse_the_buffer(what, kind, rng):
    # Proof that the fast path, not the portable fallback, is what ran above.
    be = ap.get_backend("numpy", dtype="float64")
    buf = rng.standard_normal((3, 4))
    if what == "forward":
        out = kernels.activation(be, kind, buf, inplace=True)
    else:
        a = kernels.activation(be, kind, rng.standard_normal((3, 4)))
        out = kernels.activation_grad(be, kind, a, buf, inplace=True)
    assert out is buf


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_fast_matches_portable(dtype, rng):
    be = ap.get_backend("numpy", dtype=dtype)
    w = rng.standard_normal((4, 3)).astype(dtype)
    g = rng.standard_normal((4, 3)).astype(dtype)
    w_saved, g_saved = w.copy(), g.copy()
    with kernels.use_portable():
        port = kernels.sgd_update(be, w, g, 0.3)
    np.testing.assert_array_equal(w, w_saved)  # the portable update returns a new array
    fast = kernels.sgd_update(be, w, g, 0.3)
    assert fast is w  # the fast path updates the weights in place (it owns them)
    assert fast.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast, port, rtol=RTOL[dtype], atol=0)
    np.testing.assert_allclose(port, w_saved - 0.3 * g_saved, rtol=RTOL[dtype])
    np.testing.assert_array_equal(g, g_saved)


def test_use_portable_restores_the_previous_mode():
    be = ap.get_backend("numpy", dtype="float64")
    z = np.ones((2, 2))
    with kernels.use_portable():
        with kernels.use_portable(False):
            assert kernels.activation(be, "relu", z, inplace=True) is z  # fast again
        with pytest.raises(ZeroDivisionError), kernels.use_portable():
            raise ZeroDivisionError
        assert kernels.activation(be, "relu", z, inplace=True) is not z  # still portable
    assert kernels.activation(be, "relu", z, inplace=True) is z


@pytest.mark.parametrize("kind", ["softplus", "RELU"])
def test_unknown_activation_names_the_valid_ones(backend, kind):
    z = backend.asarray(np.ones((2, 2)))
    with pytest.raises(ValueError, match="unknown activation") as info:
        kernels.activation(backend, kind, z)
    assert "leaky_relu" in str(info.value)
    with pytest.raises(ValueError, match="unknown activation"):
        kernels.activation_grad(backend, kind, z, z)


# -- every backend: the dispatched kernels against NumPy math written in the test ---------------


@pytest.mark.parametrize("kind", KINDS)
def test_activation_and_derivative_match_the_definitions(backend, kind, rng):
    z = inputs(rng, "float64")
    z[0, 0] = 0.5  # keep the exact zero away from the kinks: f' is a convention there
    z[3, 3] = -0.5
    a = kernels.activation(backend, kind, backend.asarray(z), ALPHA)
    np.testing.assert_allclose(host(backend, a), np_activation(kind, z, ALPHA), rtol=1e-14)
    g = rng.standard_normal(z.shape)
    delta = kernels.activation_grad(backend, kind, a, backend.asarray(g), ALPHA)
    expected = g * np_activation_derivative(kind, z, ALPHA)
    # f' is computed from the output (1 − a² for tanh), which near saturation cancels to an
    # absolute, not relative, accuracy of about one ulp of 1.
    np.testing.assert_allclose(host(backend, delta), expected, rtol=1e-12, atol=1e-15)


def test_linear_matches_the_definition(backend, rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    z = kernels.linear(backend, *(backend.asarray(v) for v in (x, w, b)))
    expected = np.zeros((5, 3))
    for n in range(5):
        for j in range(3):
            expected[n, j] = sum(x[n, i] * w[i, j] for i in range(4)) + b[j]
    np.testing.assert_allclose(host(backend, z), expected, rtol=1e-13)


def test_softmax_matches_the_definition(backend, rng):
    z = rng.standard_normal((6, 4)) * 5
    s = kernels.softmax(backend, backend.asarray(z))
    np.testing.assert_allclose(host(backend, s), np_softmax_rows(z), rtol=1e-13)


# -- numerics: no overflow, NaN or warning for |z| up to 1e4 in float32 --------------------------

EXTREME = np.array(
    [-1e4, -1e3, -100.0, -88.8, -50.0, -17.0, 0.0, 17.0, 50.0, 88.8, 100.0, 1e3, 1e4]
)


def test_sigmoid_and_tanh_saturate_cleanly_in_float32(backend32):
    z = backend32.asarray(EXTREME[None, :])
    for kind, lo, hi in (("sigmoid", 0.0, 1.0), ("tanh", -1.0, 1.0)):
        a = kernels.activation(backend32, kind, z)
        assert a.dtype == backend32.dtype
        out = backend32.to_host(a)[0]
        assert np.all(np.isfinite(out)), (kind, out)
        assert np.all((out >= lo) & (out <= hi)), (kind, out)
        assert out[0] == lo and out[-1] == hi
        assert out[6] == (0.5 if kind == "sigmoid" else 0.0)
        assert np.all(np.diff(out) >= 0)  # monotone
        grad = kernels.activation_grad(backend32, kind, a, backend32.asarray(np.ones((1, 13))))
        d = backend32.to_host(grad)[0]
        assert np.all(np.isfinite(d)) and np.all(d >= 0)
        assert d[0] == d[-1] == 0.0


def test_softmax_of_extreme_logits_in_float32(backend32):
    rows = np.array(
        [
            [-1e4, 0.0, 1e4],
            [1e4, 1e4, 1e4],
            [-1e4, -1e4, -1e4],
            [1e4, 1e4 - 1.0, -1e4],
            [0.0, 0.0, 88.8],
        ]
    )
    s = kernels.softmax(backend32, backend32.asarray(rows))
    assert s.dtype == backend32.dtype
    out = backend32.to_host(s).astype(np.float64)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(out[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(out[2], [1 / 3] * 3, rtol=1e-6)
    e = np.exp(-1.0)
    np.testing.assert_allclose(out[3], [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-6)
    np.testing.assert_allclose(out[4], np_softmax_rows(rows[4:5])[0], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_grad_fast_matches_portable(dtype, rng):
    be = ap.get_backend("numpy", dtype=dtype)
    delta = inputs(rng, dtype, (33, 6))
    saved = delta.copy()
    fast = kernels.bias_grad(be, delta)
    with kernels.use_portable():
        port = kernels.bias_grad(be, delta)
    assert fast.shape == port.shape == (6,) and fast.dtype == port.dtype == np.dtype(dtype)
    # A BLAS dot and a pairwise sum round differently; both are exact sums up to rounding.
    np.testing.assert_allclose(fast, port, rtol=RTOL[dtype] * 100, atol=RTOL[dtype] * 100)
    np.testing.assert_array_equal(delta, saved)


@pytest.mark.parametrize("labels_form", ["labels", "one-hot"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_fast_matches_portable(dtype, labels_form, rng):
    be = ap.get_backend("numpy", dtype=dtype)
    z = inputs(rng, dtype, (9, 5))
    labels = rng.integers(0, 5, 9)
    saved = z.copy()
    if labels_form == "labels":
        fast = kernels.softmax_cross_entropy_labels(be, z, labels)
        with kernels.use_portable():
            port = kernels.softmax_cross_entropy_labels(be, z, labels)
    else:
        y = np.eye(5, dtype=dtype)[labels]
        fast = kernels.softmax_cross_entropy(be, z, y)
        with kernels.use_portable():
            port = kernels.softmax_cross_entropy(be, z, y)
    for f, p in zip(fast, port, strict=True):
        assert f.dtype == p.dtype == np.dtype(dtype) and f.shape == p.shape
        np.testing.assert_allclose(f, p, rtol=RTOL[dtype] * 10, atol=RTOL[dtype])
    np.testing.assert_array_equal(z, saved)
    # And both against the definition, written here: mean of log Σe^z − z_label.
    zf = z.astype(np.float64)
    expected = np.mean(np.log(np.exp(zf).sum(axis=1)) - zf[np.arange(9), labels])
    assert float(fast[0]) == pytest.approx(expected, rel=RTOL[dtype] * 10)
