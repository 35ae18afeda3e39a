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


@pytest.mark.parametrize("layout", ["a@b", "a.T@b", "a@b.T"])
def test_aten_path_runs_bf16_gemms_in_float32_rounded_once(aten_path, layout, rng):
    """On a CPU without bfloat16 units the product is the float32 GEMM of the (exactly
    up-cast) bfloat16 operands, rounded to bfloat16 once: bit for bit, in every layout."""
    be = ap.get_backend("torch", dtype="bfloat16")
    a, b = _t(rng, (33, 40), "bfloat16"), _t(rng, (40, 17), "bfloat16")
    if "a.T" in layout:
        a = a.T.contiguous().T
    if "b.T" in layout:
        b = b.T.contiguous().T
    bias = _t(rng, (17,), "bfloat16")
    m = kernels.matmul(be, a, b)
    z = kernels.linear(be, a, b, bias)
    assert m.dtype == z.dtype == torch.bfloat16
    assert torch.equal(m, (a.float() @ b.float()).to(torch.bfloat16))
    assert torch.equal(z, torch.addmm(bias.float(), a.float(), b.float()).to(torch.bfloat16))


class _GemmDtypes(torch.overrides.TorchFunctionMode):
    """Records the operand dtypes of every matmul / addmm called inside the block."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.addmm, torch.Tensor.__matmul__):
            self.seen.append({a.dtype for a in args if isinstance(a, torch.Tensor)})
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("path", ["aten", "onednn"])
def test_the_gemm_itself_is_float32_only_on_the_aten_path(monkeypatch, path, rng):
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: path)
    be = ap.get_backend("torch", dtype="bfloat16")
    x, w, b = (_t(rng, s, "bfloat16") for s in ((4, 3), (3, 2), (2,)))
    with _GemmDtypes() as mode:
        kernels.linear(be, x, w, b)
        kernels.matmul(be, x, w)
    want = torch.float32 if path == "aten" else torch.bfloat16
    assert mode.seen == [{want}, {want}]


def test_other_dtypes_and_paths_are_not_emulated(monkeypatch, rng):
    a = _t(rng, (5, 6), "float32")
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: "aten")
    assert tk.emulated(a.to(torch.bfloat16)) and not tk.emulated(a)
    assert not tk.emulated(a.to(torch.float16))
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: "onednn")
    assert not tk.emulated(a.to(torch.bfloat16))


@pytest.mark.parametrize("path", ["aten", "onednn"])
def test_bf16_products_match_exact_ones_to_bf16_precision(monkeypatch, path, rng):
    """Either path: each output within a bfloat16 rounding of the exact product (float64)."""
    monkeypatch.setattr(tk, "bf16_gemm_path", lambda: path)
    be = ap.get_backend("torch", dtype="bfloat16")
    x, w = _t(rng, (33, 40), "bfloat16"), _t(rng, (40, 17), "bfloat16")
    b = _t(rng, (17,), "bfloat16")
    exact = x.double() @ w.double()
    for got, want in (
        (kernels.linear(be, x, w, b), exact + b.double()),
        (kernels.matmul(be, x, w), exact),
    ):
        assert got.dtype == torch.bfloat16
        np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=2**-7, atol=2**-6)
