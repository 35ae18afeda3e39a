"""A stand-in ``cupy`` module that runs arrayprop's CuPy kernels on the CPU, and a CuPy backend on
host arrays to train through them.

- :class:`FakeElementwiseKernel` *interprets* an ``ElementwiseKernel``'s C source on NumPy
  arrays, as the GPU would per element: argument order, which buffer is overwritten, the
  ``acc_t`` widening of float16 and every formula are those of the source in
  ``src/arrayprop/backends/cupy/kernels.py``. Compiling the C for real is
  scripts/cupy_compile_check.py's job (NVRTC, no GPU); running it is tests/backends/test_cupy.py's.
- :func:`fake_cupy_module` is the stand-in ``cupy``: ``ElementwiseKernel``, ``matmul`` and
  ``sum``, which is all the fast module uses. A name it calls that is missing here fails loudly.
- :func:`import_cupy_fast` imports the real ``arrayprop.backends.cupy.kernels`` on the stand-in.
- :class:`HostCupyBackend` is the CuPy adapter with NumPy arrays for device arrays: everything
  the library does with a ``cupy`` backend (dispatch to ``backend.fast``, in-place updates,
  the host/device boundary) runs, minus the device. tests/backends/test_cupy_on_cpu.py trains
  through it.

Used by tests/backends/test_gpu_dispatch.py and tests/backends/test_cupy_on_cpu.py.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import sys
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import array_api_compat.numpy as npx
import numpy as np
import pytest

from arrayprop.backends.base import _CACHE
from arrayprop.backends.cupy import CupyBackend
from arrayprop.backends.numpy import NumpyBackend

CUPY_FAST = "arrayprop.backends.cupy.kernels"


def _params(text: str) -> list[tuple[str, str]]:
    return [tuple(p.split()) for p in text.split(",") if p.strip()]


def _python(expr: str) -> str:
    """Rewrite one C expression of a kernel (casts already removed) as Python."""
    expr = expr.strip()
    depth, q, c = 0, None, None
    for i, ch in enumerate(expr):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch == "?" and q is None:
            q = i
        elif depth == 0 and ch == ":" and q is not None and c is None:
            c = i
    if q is not None:
        cond, then, other = expr[:q], expr[q + 1 : c], expr[c + 1 :]
        return f"_where({_python(cond)}, {_python(then)}, {_python(other)})"
    out, i = [], 0
    while i < len(expr):
        if expr[i] != "(":
            out.append(expr[i])
            i += 1
            continue
        depth, j = 1, i + 1
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            j += 1
        out.append("(" + _python(expr[i + 1 : j - 1]) + ")")
        i = j
    return "".join(out)


def _unary(np_f, math_f):
    return lambda v: np_f(v) if isinstance(v, np.ndarray) else math_f(v)


class FakeElementwiseKernel:
    """Runs an ``ElementwiseKernel``'s operation on NumPy arrays, as the GPU would per element.

    Array parameters of type ``T`` are broadcast, widened to the accumulation type (float32 for
    float16, as ``acc_t``), output parameters start from the given buffers (so in-place kernels
    read them) and are written back into them.
    """

    calls: ClassVar[list[str]] = []

    def __init__(self, in_params, out_params, operation, name, preamble=""):
        assert re.fullmatch(r"[A-Za-z_]\w*", name), name
        assert "ap_acc" not in operation or "struct ap_acc" in preamble
        self.ins, self.outs, self.name = _params(in_params), _params(out_params), name
        self.statements = []
        for stmt in re.sub(r"\((acc_t|T)\)", "", operation).split(";"):
            stmt = " ".join(stmt.split())
            if not stmt or stmt.startswith("typedef"):
                continue
            target, expr = re.fullmatch(r"(?:acc_t )?(\w+) = (.*)", stmt).groups()
            self.statements.append((target, compile(_python(expr), name, "eval")))

    def __call__(self, *args):
        FakeElementwiseKernel.calls.append(self.name)
        ins, outs = args[: len(self.ins)], list(args[len(self.ins) :])
        assert len(outs) in (0, len(self.outs)), f"{self.name}: bad argument count"
        typed = [
            a
            for (t, _), a in zip(self.ins + self.outs, list(ins) + outs, strict=False)
            if t == "T" and isinstance(a, np.ndarray)
        ]
        dtype = typed[0].dtype
        assert all(a.dtype == dtype for a in typed), f"{self.name}: mixed dtypes"
        acc = np.float32 if dtype == np.float16 else dtype
        shape = np.broadcast_shapes(*(a.shape for a in typed))
        if not outs:
            outs = [np.empty(shape, dtype) for _ in self.outs]
        env = {
            "_where": np.where,
            "exp": _unary(np.exp, math.exp),
            "tanh": _unary(np.tanh, math.tanh),
            "sqrt": _unary(np.sqrt, math.sqrt),
        }
        for (t, n), a in zip(self.ins, ins, strict=True):
            env[n] = a.astype(acc) if t == "T" else float(a)
        for (_, n), a in zip(self.outs, outs, strict=True):
            assert a.shape == shape, f"{self.name}: output {n} of shape {a.shape}, need {shape}"
            env[n] = a.astype(acc)
        for target, code in self.statements:
            env[target] = eval(code, env)  # the kernel's own statements, translated above
        for (_, n), a in zip(self.outs, outs, strict=True):
            a[...] = np.broadcast_to(env[n], shape)
        return outs[0] if len(outs) == 1 else tuple(outs)


def _sum(a, axis=None):
    # CuPy reduces float16 in float32 registers and rounds once, as here.
    acc = np.float32 if a.dtype == np.float16 else a.dtype
    return np.sum(a, axis=axis, dtype=acc).astype(a.dtype)


def fake_cupy_module() -> types.ModuleType:
    """The stand-in ``cupy``: only what backends/cupy/kernels.py calls."""
    mod = types.ModuleType("cupy")
    mod.ElementwiseKernel = FakeElementwiseKernel
    mod.matmul = np.matmul
    mod.sum = _sum
    return mod


def forget_cupy_fast() -> None:
    """Drop the imported fast module, so the next import sees whatever ``cupy`` is then."""
    sys.modules.pop(CUPY_FAST, None)
    import arrayprop.backends.cupy as cupy_package

    if hasattr(cupy_package, "kernels"):
        delattr(cupy_package, "kernels")


def import_cupy_fast(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``import cupy`` gives the stand-in (until the test ends); the fast module built on it.

    Pair it with :func:`restoring_cupy_fast`, which puts the real state back afterwards.
    """
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy_module())
    FakeElementwiseKernel.calls = []
    forget_cupy_fast()
    return importlib.import_module(CUPY_FAST)


@contextlib.contextmanager
def restoring_cupy_fast():
    """Within the block the fast module may be re-imported on anything; restored after."""
    saved = sys.modules.get(CUPY_FAST)
    try:
        yield
    finally:
        forget_cupy_fast()
        if saved is not None:
            sys.modules[CUPY_FAST] = saved


# --------------------------------------------------------------------------- a host CuPy backend


class HostDevice:
    """The stand-in backend's one "device": host memory, usable as ``with device:`` like a
    ``cupy.cuda.Device``, with an ``id``, and equal to ``"cpu"`` for the NumPy namespace."""

    id = 0

    def __eq__(self, other: object) -> bool:
        return other is self or other == "cpu"

    def __hash__(self) -> int:
        return hash("cpu")

    def __enter__(self) -> HostDevice:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __str__(self) -> str:
        return "cupy-standin-host"

    __repr__ = __str__


HOST = HostDevice()


class HostCupyBackend(CupyBackend):
    """:class:`~arrayprop.backends.cupy.CupyBackend` on NumPy arrays in host memory.

    Only the hooks that touch a device are replaced (namespace, device, array type, copies,
    sync); dispatch, ``fast`` (the real CuPy fast module, imported on whatever ``cupy`` is),
    TF32 and graph hooks are CuPy's. Its cache entries carry the device name
    ``cupy-standin-host``; :func:`forget_host_backends` drops them.
    """

    @classmethod
    def import_namespace(cls):
        return npx

    @classmethod
    def resolve_device(cls, xp, device):
        return HOST

    @classmethod
    def load_array_type(cls, xp):
        return np.ndarray

    @classmethod
    def instance(cls, device: Any = None, dtype: Any = None) -> CupyBackend:
        return super().instance(HOST, dtype)

    def device_put(self, host: np.ndarray) -> Any:
        return np.array(host)  # a copy, as a transfer to the device makes

    def device_get(self, x: Any) -> np.ndarray:
        return np.array(x)

    def same_device(self, x: Any) -> bool:
        return True

    def sync(self, x: Any = None) -> None:
        return None


def forget_host_backends() -> None:
    for key in [k for k in _CACHE if k[1] == str(HOST)]:
        del _CACHE[key]


@contextlib.contextmanager
def arrays_belong_to_host_cupy() -> Iterator[None]:
    """Within the block every NumPy array is an array of :class:`HostCupyBackend`.

    The library finds an array's backend with :func:`arrayprop.backends.backend_of` (optimizers
    from their first parameter, losses and metrics from the predictions), and NumPy's adapter
    claims every ndarray. Here CuPy's adapter claims them instead, so that those parts too
    dispatch to CuPy's fast module. Run NumPy references outside the block.
    """
    saved = NumpyBackend.__dict__["of_array"]

    def of_array(cls, x: Any, dtype: Any = None) -> CupyBackend | None:
        return HostCupyBackend.instance(dtype=dtype) if isinstance(x, np.ndarray) else None

    NumpyBackend.of_array = classmethod(of_array)
    try:
        yield
    finally:
        NumpyBackend.of_array = saved
