"""A direct call of ``cblas_?gemm`` inside NumPy's own OpenBLAS, for products that add into
an existing array: the fused SGD update (:func:`add_xt_delta`) and the shifted GEMMs of a
stride-1 convolution's input gradient (:func:`add_product`, C ← A B + C into a column slice).

``numpy.matmul`` always writes a new product. Plain SGD needs ``W ← W − η Xᵀδ`` (eqs. 5 and
7 of docs/math.md), which BLAS does in one call, ``C ← α AᵀB + β C`` with α = −η, β = 1 and
C = W: the weight gradient is never written to memory and the separate pass over W that the
update costs (read W and ∂W, write W: 7-8% of a large step) disappears.

NumPy has no public way to ask for β = 1, so this module finds the OpenBLAS library that
NumPy's wheels bundle (``numpy.libs/``, ``numpy/.dylibs/``) and calls its ILP64 CBLAS entry
point ``scipy_cblas_?gemm64_`` through ctypes. Using NumPy's copy matters: a second OpenBLAS
(SciPy's, say) has its own thread pool, and two pools spinning on two cores halve the speed
of every product (measured: a train step 2x slower).

Only that one known symbol, with 64-bit integers, is used; NumPy built against anything else
(MKL, Accelerate, a distribution's OpenBLAS) leaves :data:`GEMM` None and the callers use the
unfused NumPy code. A self-test against ``numpy.matmul`` runs before the binding is trusted,
and ``ARRAYPROP_CBLAS=0`` turns it off. :func:`status` says which and why (``arrayprop info``).
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_CHAR = ctypes.c_char
_SYMBOLS = {
    np.dtype(np.float32): "scipy_cblas_sgemm64_",
    np.dtype(np.float64): "scipy_cblas_dgemm64_",
}


def _library_paths() -> list[str]:
    """OpenBLAS shared libraries bundled with the imported NumPy (Linux, macOS, Windows)."""
    root = os.path.dirname(os.path.abspath(np.__file__))
    patterns = [
        os.path.join(root + ".libs", "*openblas*"),
        os.path.join(os.path.dirname(root), "numpy.libs", "*openblas*"),
        os.path.join(root, ".dylibs", "*openblas*"),
    ]
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if path not in found:
                found.append(path)
    return found


def _bind(path: str) -> dict[np.dtype, ctypes._CFuncPtr] | None:
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    funcs = {}
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    for dtype, symbol in _SYMBOLS.items():
        f = getattr(lib, symbol, None)
        if f is None:
            return None
        real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        # enum order, enum transA, enum transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
        f.argtypes = [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64]
        f.restype = None
        funcs[dtype] = f
    return funcs


def _address(a: np.ndarray) -> int:
    # ctypes through the buffer protocol: 3x cheaper than ``a.ctypes.data`` (which builds a
    # helper object per call), but it needs a writable, C-contiguous buffer; other arrays (read-only
    # ones, column-slice views) take the slow way.
    if a.flags.writeable and a.flags.c_contiguous:
        return ctypes.addressof(_CHAR.from_buffer(a))
    return a.ctypes.data


def add_xt_delta(w: np.ndarray, x: np.ndarray, delta: np.ndarray, alpha: float) -> bool:
    """W ← W + α Xᵀδ in place, one GEMM. False (W untouched) when the binding cannot take
    these arrays: no binding, another dtype, non-contiguous, misaligned or overlapping buffers.

    w : (k, m) C-contiguous, writable; x : (n, k); delta : (n, m), all of w's dtype.
    """
    gemm = GEMM.get(w.dtype) if GEMM is not None else None
    if (
        gemm is None
        or x.dtype != w.dtype
        or delta.dtype != w.dtype
        or w.ndim != 2
        or x.ndim != 2
        or delta.ndim != 2
    ):
        return False
    n, k = x.shape
    m = delta.shape[1]
    if delta.shape[0] != n or w.shape != (k, m):
        return False
    fx, fd = x.flags, delta.flags
    if not (w.flags.carray and fx.c_contiguous and fx.aligned and fd.c_contiguous and fd.aligned):
        return False
    if np.may_share_memory(w, x) or np.may_share_memory(w, delta):
        return False
    if n and k and m:
        _call(gemm, w, x, delta, alpha)
    return True


def _rows(a: np.ndarray) -> int | None:
    """The leading dimension (elements between rows) of a 2-D view whose rows are contiguous
    and aligned, else None."""
    if a.ndim != 2 or not a.flags.aligned or a.strides[1] != a.itemsize:
        return None
    if a.strides[0] % a.itemsize or a.strides[0] // a.itemsize < a.shape[1]:
        return None
    return a.strides[0] // a.itemsize


def add_product(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """C ← A B + C in place, one GEMM, where C may be a view of a larger array whose rows are
    contiguous (a column slice). False (C untouched) when the binding cannot take these arrays:
    no binding, another dtype, rows not contiguous, read-only or overlapping buffers.

    c : (m, n) writable; a : (m, k); b : (k, n); all of c's dtype.
    """
    gemm = GEMM.get(c.dtype) if GEMM is not None else None
    if gemm is None or a.dtype != c.dtype or b.dtype != c.dtype or not c.flags.writeable:
        return False
    ldc, lda, ldb = _rows(c), _rows(a), _rows(b)
    if ldc is None or lda is None or ldb is None:
        return False
    (m, k), n = a.shape, b.shape[1]
    if b.shape[0] != k or c.shape != (m, n):
        return False
    if np.may_share_memory(c, a) or np.may_share_memory(c, b):
        return False
    if m and n and k:
        gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, 1.0, _address(a), lda, _address(b),
             ldb, 1.0, _address(c), ldc)  # fmt: skip
    return True


def _call(gemm, w: np.ndarray, x: np.ndarray, delta: np.ndarray, alpha: float) -> None:
    """Row-major C (k × m) ← α Aᵀ B + 1·C with C = w, A = x (n × k), B = delta (n × m)."""
    (n, k), m = x.shape, delta.shape[1]
    gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, k, m, n, alpha, _address(x), k, _address(delta), m, 1.0,
         _address(w), m)  # fmt: skip


def _self_test(funcs) -> bool:
    """One small product per dtype against numpy.matmul, with odd sizes and a non-zero C."""
    rng = np.random.default_rng(0)
    for dtype, gemm in funcs.items():
        x = rng.standard_normal((7, 5)).astype(dtype)
        d = rng.standard_normal((7, 3)).astype(dtype)
        w = rng.standard_normal((5, 3)).astype(dtype)
        want = w - 0.5 * (x.T @ d)
        _call(gemm, w, x, d, -0.5)
        if not np.allclose(w, want, rtol=1e-5, atol=1e-5):
            return False
    return True


def _load() -> tuple[dict | None, str]:
    if os.environ.get("ARRAYPROP_CBLAS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "off (ARRAYPROP_CBLAS=0)"
    paths = _library_paths()
    if not paths:
        return None, "off (NumPy bundles no OpenBLAS: built against another BLAS)"
    for path in paths:
        funcs = _bind(path)
        if funcs is None:
            continue
        if not _self_test(funcs):
            return None, f"off (self-test against numpy.matmul failed for {os.path.basename(path)})"
        return funcs, f"on ({os.path.basename(path)}, {_SYMBOLS[np.dtype(np.float32)]})"
    return None, "off (NumPy's OpenBLAS has no ILP64 scipy_cblas_?gemm64_ symbol)"


#: dtype -> bound CBLAS gemm, or None when the binding is off.
GEMM: dict | None
GEMM, _STATUS = _load()


def status() -> str:
    """'on (library, symbol)' or 'off (reason)'."""
    return _STATUS
