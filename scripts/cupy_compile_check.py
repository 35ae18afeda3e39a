"""Compile every CuPy kernel of arrayprop with NVRTC for every dtype it claims, without a GPU.

    python scripts/cupy_compile_check.py [--arch 90] [--plant-error] [--kernels A,B] [--json PATH]

Needs CuPy and NVRTC (``pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12``: no CUDA driver, no
device; ``make compile-check`` installs them into a venv of their own). For each kernel of
``arrayprop.backends.cupy.kernels.all_kernels()`` and each dtype of its ``DTYPES`` (float16,
float32, float64) this

1. has CuPy generate the kernel's CUDA source as ``ElementwiseKernel.__call__`` would for
   contiguous 1-D arrays of that dtype (``cupy._core._kernel._get_elementwise_kernel_code``),
2. has CuPy add its headers and compiler options (``cupy._core.core.compile_with_cache``, with
   the final step, which would load the binary onto a device, intercepted), and
3. compiles that with NVRTC to a cubin for ``sm_<arch>`` (``cupy.cuda.compiler``),

so a C++ error (an ``ap_acc`` template, a float16 conversion, an overload of ``exp`` / ``tanh``
/ ``sqrt`` for one dtype) shows here instead of on the first GPU step. Steps 1 and 2 use CuPy
internals (checked with CuPy 14.2); if they change, the check says so and exits 2.

``--plant-error`` adds a kernel with a bug of the kind the check exists for: a ReLU written
without the ``acc_t`` casts, which compiles for float32 and float64 but not for float16. The
check must then fail (exit 1) and name that kernel and dtype; ``make compile-check`` runs both.

Exit status: 0 all compiled, 1 a kernel failed, 2 CuPy / NVRTC missing or changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PLANTED = ("arrayprop_planted_relu_without_casts", "T z", "T y", "y = z < 0 ? 0 : z;")


class _Captured(Exception):
    """Raised instead of loading a compiled module: carries CuPy's final source and options."""

    def __init__(self, source: str, options: tuple[str, ...]) -> None:
        super().__init__("captured")
        self.source, self.options = source, options


def _cupy():
    """(cupy, its kernel internals) or exit 2 with the reason."""
    try:
        import cupy
        import numpy
        from cupy._core import _carray, _kernel, _scalar, core
        from cupy.cuda import compiler
    except ImportError as exc:
        print(f"compile check: CuPy is not importable ({exc}); pip install cupy-cuda12x")
        sys.exit(2)
    return cupy, numpy, _kernel, _scalar, _carray, core, compiler


def _source_and_options(kernel, dtype: str, arch: str):
    """CuPy's CUDA source and NVRTC options for ``kernel`` on 1-D contiguous ``dtype`` arrays."""
    cupy, numpy, _kernel, _scalar, _carray, core, compiler = _cupy()
    # _ArgInfo kinds (cupy/_core/_kernel.pxd): 1 ndarray, 2 indexer, 3 scalar.
    infos = []
    for p in kernel.params:
        if p.name == "_ind":
            infos.append(_kernel._ArgInfo(2, _carray.Indexer, None, 1, True, True))
        elif p.dtype is None:  # a type placeholder (T): an array of the dtype under test
            infos.append(_kernel._ArgInfo(1, cupy.ndarray, numpy.dtype(dtype), 1, True, True))
        else:  # a fixed-type scalar (float64 lr)
            infos.append(_kernel._ArgInfo(3, _scalar.CScalar, p.dtype, 0, True, True))
    type_map = _kernel._TypeMap((("T", numpy.dtype(dtype)),))
    options = tuple(kernel.kwargs.get("options", ()))
    code = _kernel._get_elementwise_kernel_code(
        tuple(infos), type_map, kernel.params, kernel.operation, kernel.name, kernel.preamble
    )
    # The parameter list tells whether the kinds above still mean what they meant.
    signature = code[code.index(kernel.name) :].split("{", 1)[0]
    if "CIndexer<" not in signature or "CArray<" not in signature:
        raise RuntimeError(f"CuPy's kernel code generator changed: {signature.strip()!r}")

    def intercept(source, options, *args, **kwargs):
        raise _Captured(source, tuple(options))

    saved = compiler._compile_module_with_cache
    compiler._compile_module_with_cache = intercept
    try:
        core.compile_with_cache(code, options)
    except _Captured as captured:
        extra = (f"-arch=sm_{arch}", "--device-as-default-execution-space")
        return captured.source, captured.options + extra
    finally:
        compiler._compile_module_with_cache = saved
    raise RuntimeError("CuPy compiled without reaching _compile_module_with_cache")


def compile_kernel(kernel, dtype: str, arch: str) -> str | None:
    """None when NVRTC compiles ``kernel`` for ``dtype``, else the first lines of its log."""
    compiler = _cupy()[-1]
    source, options = _source_and_options(kernel, dtype, arch)
    try:
        compiler._NVRTCProgram(source, f"{kernel.name}.cu", method="cubin").compile(options)
    except compiler.CompileException as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return "\n".join(lines[:6])
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90", help="compute capabilities, e.g. 80,90 (90)")
    parser.add_argument("--plant-error", action="store_true", help="add a kernel that must fail")
    parser.add_argument("--kernels", help="only these kernels (comma-separated names)")
    parser.add_argument("--json", metavar="PATH", help="write one record per compile")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    cupy, *_, compiler = _cupy()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from arrayprop.backends.cupy import kernels as cupy_fast

    try:
        nvrtc = ".".join(map(str, compiler._get_nvrtc_version()))
    except Exception as exc:  # the NVRTC library is missing
        print(f"compile check: NVRTC is not loadable ({exc}); pip install nvidia-cuda-nvrtc-cu12")
        return 2
    kernels = cupy_fast.all_kernels()
    if args.plant_error:
        name, ins, outs, body = PLANTED
        kernels.append(cupy.ElementwiseKernel(ins, outs, body, name))
    if args.kernels:
        wanted = {k.strip() for k in args.kernels.split(",")}
        unknown = wanted - {k.name for k in kernels}
        if unknown:
            print(f"compile check: no kernel named {', '.join(sorted(unknown))}")
            return 2
        kernels = [k for k in kernels if k.name in wanted]
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    print(
        f"compile check: CuPy {cupy.__version__}, NVRTC {nvrtc}, {len(kernels)} kernels x "
        f"{len(cupy_fast.DTYPES)} dtypes ({', '.join(cupy_fast.DTYPES)}) x sm_{',sm_'.join(archs)}"
    )
    records, failed = [], 0
    for kernel in kernels:
        for dtype in cupy_fast.DTYPES:
            for arch in archs:
                start = time.perf_counter()
                try:
                    error = compile_kernel(kernel, dtype, arch)
                except RuntimeError as exc:
                    print(f"compile check: cannot generate the source: {exc}")
                    return 2
                seconds = time.perf_counter() - start
                records.append(
                    {
                        "kernel": kernel.name,
                        "dtype": dtype,
                        "arch": f"sm_{arch}",
                        "ok": error is None,
                        "seconds": round(seconds, 3),
                        "error": error,
                    }
                )
                if error is not None:
                    failed += 1
                    print(
                        f"FAIL {kernel.name} {dtype} sm_{arch}:\n    "
                        + error.replace("\n", "\n    ")
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    elapsed = time.perf_counter() - t0
    print(f"compile check: {len(records) - failed} compiled, {failed} failed in {elapsed:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
