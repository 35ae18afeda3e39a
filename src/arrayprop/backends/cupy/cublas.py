"""cuBLAS through ctypes: a GEMM that stays legal under CUDA stream capture (see docs/gpu.md).

CuPy refuses cuBLAS calls on a capturing stream (cupy/cupy#6290), so while
:class:`~arrayprop.CudaGraphStep` warms up and captures a step its GEMMs go to the libcublas
CuPy itself loaded, called directly on a handle bound to the capture stream with a workspace of
its own (:class:`CublasGemm`). The module also reads and sets CuPy's float32 GEMM mode (TF32),
so that the capture GEMM computes what ``cupy.matmul`` would.

CuPy is imported inside the functions, so this module imports without CuPy (and the tests can
stand a NumPy-backed module in for it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Any

from arrayprop.errors import DTypeError, ShapeError

__all__ = [
    "WORKSPACE_BYTES",
    "CublasGemm",
    "check_status",
    "cupy_uses_tf32",
    "load_cublas",
    "set_cupy_tf32",
]

# cuBLAS / CUDA enum values (cublas_api.h, library_types.h).
OP_N, OP_T = 0, 1
CUDA_R = {"float32": 0, "float64": 1, "float16": 2}
COMPUTE_32F, COMPUTE_64F, COMPUTE_32F_FAST_TF32 = 68, 70, 77
GEMM_DEFAULT = -1
#: NVIDIA recommends 32 MiB of cuBLAS workspace on Hopper; with a workspace of its own, cuBLAS
#: never allocates while a stream is capturing.
WORKSPACE_BYTES = 32 * 1024 * 1024


def check_status(status: int, what: str) -> None:
    """Raise ``RuntimeError`` naming the call ``what`` unless cuBLAS returned success (0)."""
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def load_cublas() -> ctypes.CDLL:
    """The libcublas that CuPy itself uses, opened through ctypes."""
    import cupy

    # A GEMM makes CuPy load its cuBLAS into the process; opening the same soname (or the same
    # mapped file) then returns that library instead of a second copy.
    one = cupy.ones((1, 1), dtype=cupy.float32)
    cupy.matmul(one, one)
    major = cupy.cuda.runtime.runtimeGetVersion() // 1000
    candidates = [f"libcublas.so.{major}"]
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libcublas.so") and path not in candidates:
                candidates.append(path)
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError(f"cannot open cuBLAS through ctypes (tried {', '.join(candidates)})")


def cupy_uses_tf32() -> bool:
    """Whether CuPy runs float32 GEMMs with TF32 (CUPY_TF32=1), so the capture GEMM agrees."""
    import numpy

    try:
        from cupy._core import _routines_linalg as linalg

        return linalg.get_compute_type(numpy.float32) == linalg.COMPUTE_TYPE_TF32
    except (ImportError, AttributeError):
        return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def set_cupy_tf32(enabled: bool) -> None:
    """Update CuPy's cached float32 GEMM mode, which it reads from CUPY_TF32 only once."""
    import numpy

    try:
        from cupy._core import _routines_linalg as linalg  # private: best effort

        mode = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
        linalg.set_compute_type(numpy.float32, mode)
    except (ImportError, AttributeError):  # no CuPy (yet): the variable takes effect on import
        pass


class CublasGemm:
    """C = A B on cuBLAS through ctypes, on one stream: legal while that stream captures.

    ``a`` (m, k) and ``b`` (k, n) are 2-D CuPy arrays of one float dtype; C-contiguous and
    F-contiguous operands (``x.T`` views) are used as they are, anything else is copied. The
    result C (m, n) is a new C-contiguous array.

    Parameters
    ----------
    stream : cupy.cuda.Stream
        The stream every GEMM of this object is issued on.
    """

    def __init__(self, stream: Any) -> None:
        import cupy

        lib = load_cublas()
        vp, i = ctypes.c_void_p, ctypes.c_int
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasDestroy_v2.argtypes = [vp]
        # handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype,
        # ldc, computeType, algo
        lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
        for f in (lib.cublasCreate_v2, lib.cublasSetStream_v2, lib.cublasGemmEx):
            f.restype = i
        handle = vp()
        check_status(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self._lib, self._handle = lib, handle
        check_status(lib.cublasSetStream_v2(handle, stream.ptr), "cublasSetStream")
        self._workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        if hasattr(lib, "cublasSetWorkspace_v2"):
            lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
            lib.cublasSetWorkspace_v2.restype = i
            status = lib.cublasSetWorkspace_v2(handle, self._workspace.data.ptr, WORKSPACE_BYTES)
            check_status(status, "cublasSetWorkspace")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._lib.cublasDestroy_v2(self._handle)

    @staticmethod
    def _operand(x: Any) -> tuple[Any, int, int]:
        """(array, op, ld) such that op(x's buffer read column-major) is xᵀ."""
        import cupy

        if x.flags.c_contiguous:
            return x, OP_N, max(1, x.shape[1])
        if x.flags.f_contiguous:
            return x, OP_T, max(1, x.shape[0])
        x = cupy.ascontiguousarray(x)
        return x, OP_N, max(1, x.shape[1])

    def __call__(self, a: Any, b: Any) -> Any:
        import cupy

        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            raise ShapeError(
                f"capture GEMM: need (m, k) @ (k, n) of one dtype, got {a.shape} {a.dtype} @ "
                f"{b.shape} {b.dtype}"
            )
        kind = a.dtype.name
        if kind not in CUDA_R:
            raise DTypeError(f"capture GEMM: unsupported dtype {kind}")
        (m, k), n = a.shape, b.shape[1]
        c = cupy.empty((m, n), dtype=a.dtype)
        if m == 0 or n == 0:
            return c
        if k == 0:
            c.fill(0)
            return c
        a, op_a, lda = self._operand(a)
        b, op_b, ldb = self._operand(b)
        if kind == "float64":
            alpha, beta, compute = ctypes.c_double(1.0), ctypes.c_double(0.0), COMPUTE_64F
        else:
            alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
            tf32 = kind == "float32" and cupy_uses_tf32()  # read per call: it can change
            compute = COMPUTE_32F_FAST_TF32 if tf32 else COMPUTE_32F
        t = CUDA_R[kind]
        # Row-major C (m, n) = A B is column-major Cᵀ (n, m) = Bᵀ Aᵀ: B goes first. The host
        # scalars alpha, beta are read at call time, i.e. recorded into a graph being captured.
        status = self._lib.cublasGemmEx(
            self._handle, op_b, op_a, n, m, k,
            ctypes.addressof(alpha), b.data.ptr, t, ldb, a.data.ptr, t, lda,
            ctypes.addressof(beta), c.data.ptr, t, n, compute, GEMM_DEFAULT,
        )  # fmt: skip
        check_status(status, "cublasGemmEx")
        return c
