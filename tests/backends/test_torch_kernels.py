"""PyTorch fast paths (backends/torch/kernels.py) against the portable reference, and the
bfloat16 GEMM layout on CPUs without bfloat16 units (docs/precision.md)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import arrayprop as ap  # noqa: E402
from arrayprop import kernels  # noqa: E402
from arrayprop.backends.torch import kernels as tk  # noqa: E402

RTOL = {"float32": 1e-6, "float64": 1e-14}
KINDS = kernels.ACTIVATIONS


@pytest.fixture(autouse=True)
def fast_paths_on():
    with kernels.use_portable(False):
        yield


def _both(fn):
    """(fast, portable) results of ``fn()``."""
    fast = fn()
    with kernels.use_portable():
        port = fn()
    return fast, port


def _t(rng, shape, dtype):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float64)).to(getattr(torch, dtype))


def test_the_torch_backend_dispatches_here():
    assert ap.get_backend("torch").fast is tk


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_and_matmul_match_portable_and_leave_arguments_alone(dtype, rng):
    be = ap.get_backend("torch", dtype=dtype)
    x, w, b, d = (_t(rng, s, dtype) for s in ((6, 4), (4, 3), (3,), (6, 3)))
    saved = [a.clone() for a in (x, w, b, d)]
    for fn in (
        lambda: kernels.linear(be, x, w, b),
        lambda: kernels.matmul(be, x.T, d),
        lambda: kernels.matmul(be, d, w.T),
    ):
        fast, port = _both(fn)
        assert fast.dtype == port.dtype == getattr(torch, dtype)
        np.testing.assert_allclose(fast.numpy(), port.numpy(), rtol=RTOL[dtype], atol=1e-15)
    for a, s in zip((x, w, b, d), saved, strict=True):
        assert torch.equal(a, s)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_activations_match_portable(kind, inplace, rng):
    be = ap.get_backend("torch", dtype="float64")
    z, b, g = _t(rng, (7, 5), "float64"), _t(rng, (5,), "float64"), _t(rng, (7, 5), "float64")
    z[0, 0] = 0.0
    a = kernels.activation(be, kind, z, 0.07)
    port = []
    with kernels.use_portable():
        port.append(kernels.bias_activation(be, kind, z, b, 0.07))
        port.append(kernels.activation(be, kind, z, 0.07))
        port.append(kernels.activation_grad(be, kind, a, g, 0.07))
    saved = [t.clone() for t in (z, a, g)]
    fast = [
        kernels.bias_activation(be, kind, z.clone() if inplace else z, b, 0.07, inplace=inplace),
        kernels.activation(be, kind, z.clone() if inplace else z, 0.07, inplace=inplace),
        kernels.activation_grad(be, kind, a, g.clone() if inplace else g, 0.07, inplace=inplace),
    ]
    for f, p in zip(fast, port, strict=True):
        np.testing.assert_allclose(f.numpy(), p.numpy(), rtol=1e-14, atol=1e-300)
    for t, s in zip((z, a, g), saved, strict=True):  # only the copies may have been overwritten
        assert torch.equal(t, s)


def test_bias_grad_and_sgd_update_match_portable(rng):
    be = ap.get_backend("torch", dtype="float64")
    d, w, g = _t(rng, (9, 4), "float64"), _t(rng, (3, 4), "float64"), _t(rng, (3, 4), "float64")
    fast, port = _both(lambda: kernels.bias_grad(be, d))
    np.testing.assert_allclose(fast.numpy(), port.numpy(), rtol=1e-14)
    with kernels.use_portable():
        expected = kernels.sgd_update(be, w, g, 0.1)
    updated = kernels.sgd_update(be, w, g, 0.1)
    assert updated is w  # in place: the optimizer owns w
    np.testing.assert_allclose(w.numpy(), expected.numpy(), rtol=1e-14)


# -- bfloat16 on the "aten" fallback path ----------------------------------------------------------


@pytest.fixture
def aten_path(monkeypatch):
    """As on a CPU without AVX-512 or AMX, whatever this one has."""
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: "aten")


def test_bf16_gemm_path_is_one_of_two():
    assert tk.bf16_gemm_path() in ("onednn", "aten")


@pytest.mark.parametrize("layout", ["a@b", "a.T@b", "a@b.T", "a.T@b.T"])
def test_aten_path_hands_a_column_major_and_b_row_major(aten_path, layout, rng):
    a = _t(rng, (5, 6), "bfloat16")
    b = _t(rng, (6, 3), "bfloat16")
    if "a.T" in layout:
        a = a.T.contiguous().T
    if "b.T" in layout:
        b = b.T.contiguous().T
    a2, b2 = tk.gemm_operands(a, b)
    assert a2.stride() == (1, 5) and b2.is_contiguous()
    assert torch.equal(a2, a) and torch.equal(b2, b)


def test_other_dtypes_and_paths_are_left_alone(monkeypatch, rng):
    a, b = _t(rng, (5, 6), "float32"), _t(rng, (6, 3), "float32")
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: "aten")
    assert tk.gemm_operands(a, b)[0] is a  # float32: MKL is fast in every layout
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: "onednn")
    a16 = a.to(torch.bfloat16)
    assert tk.gemm_operands(a16, b.to(torch.bfloat16))[0] is a16


@pytest.mark.parametrize("path", ["aten", "onednn"])
def test_bf16_products_are_float32_dot_products_rounded_once(monkeypatch, path, rng):
    """Same values in every layout: each output a float32-accumulated dot product of bfloat16
    inputs, rounded to bfloat16 (within one bfloat16 rounding of the float32 product)."""
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: path)
    be = ap.get_backend("torch", dtype="bfloat16")
    x, w, b = (
        _t(rng, (33, 40), "bfloat16"),
        _t(rng, (40, 17), "bfloat16"),
        _t(rng, (17,), "bfloat16"),
    )
    exact = x.double() @ w.double() + b.double()
    z = kernels.linear(be, x, w, b)
    assert z.dtype == torch.bfloat16
    np.testing.assert_allclose(z.double().numpy(), exact.numpy(), rtol=2**-7, atol=2**-7)
    m = kernels.matmul(be, x, w)
    np.testing.assert_allclose(
        m.double().numpy(), (x.double() @ w.double()).numpy(), rtol=2**-7, atol=2**-7
    )
