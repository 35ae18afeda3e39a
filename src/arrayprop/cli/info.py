"""``arrayprop info``: versions, backends, devices and the BLAS NumPy uses."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
from typing import Any

import numpy as np

from arrayprop import kernels
from arrayprop.backends import cpu, describe_backends
from arrayprop.backends.threads import blas_pools, describe_rule
from arrayprop.version import __version__

__all__ = ["add_parser", "bf16_report", "blas_report", "blas_threads_report", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``info`` sub-command to ``sub`` (the result of ``add_subparsers``)."""
    info = sub.add_parser("info", help="versions, backends, devices and BLAS")
    info.set_defaults(run=run)
    return info


def blas_report() -> str:
    """NumPy's BLAS as ``numpy.show_config`` records it, in one line."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
    except Exception:  # older NumPy, or a build without the record
        return "unknown"
    text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    detail = blas.get("openblas configuration")
    return f"{text} ({detail})" if detail else text


def blas_threads_report() -> str:
    """NumPy's BLAS thread pools (threadpoolctl) and the limit ``fit`` applies, two lines."""
    pools = ", ".join(
        " ".join(str(p[k]) for k in ("internal_api", "version") if p[k]) + f": {p['num_threads']}"
        for p in blas_pools()
    )
    return f"{pools or 'no BLAS pool found'}\n  {describe_rule()}"


def bf16_report(flags: frozenset[str] | None = None, torch_path: str | None = None) -> list[str]:
    """Lines on the CPU's bfloat16 matrix units and which path would use them.

    ``flags`` (default: /proc/cpuinfo's) and ``torch_path`` (default: asked of PyTorch when it
    is installed: ``"onednn"`` or ``"aten"``, see
    :func:`arrayprop.backends.torch.kernels.bf16_gemm_path`) are for the tests.
    """
    units = cpu.bf16_units(flags)
    if not units["known"]:
        hw = "unknown (no x86 flags in /proc/cpuinfo)"
    elif units["units"]:
        hw = " and ".join(units["units"])
    else:
        extra = "AVX-512 only" if units["avx512"] else "no AVX-512 either"
        hw = f"none (no AMX-BF16, no AVX512-BF16; {extra})"
    lines = [f"bfloat16 matrix units on the CPU: {hw}"]
    if torch_path is None and importlib.util.find_spec("torch") is not None:
        from arrayprop.backends.torch.kernels import bf16_gemm_path, cpu_capability

        torch_path = f"{bf16_gemm_path()} {cpu_capability()}"
    if torch_path is None:
        lines.append(
            "bfloat16 GEMMs on torch: not installed (MixedPrecision 'bfloat16' needs it, or jax)"
        )
    elif torch_path.startswith("onednn"):
        capability = torch_path.partition(" ")[2]
        how = "on those units" if units["units"] else "converted to float32 in AVX-512 registers"
        lines.append(
            f"bfloat16 GEMMs on torch (CPU capability {capability or '?'}): oneDNN, {how}; "
            "MixedPrecision(..., 'bfloat16') on the torch backend uses them"
        )
    else:
        capability = torch_path.partition(" ")[2]
        lines.append(
            f"bfloat16 GEMMs on torch (CPU capability {capability or '?'}): no oneDNN bf16 "
            "GEMM; arrayprop runs bf16 GEMMs as float32 GEMMs, so bf16 is no faster than float32"
        )
    lines.append("bfloat16 GEMMs on numpy: none (no bfloat16 dtype; docs/precision.md)")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the report; returns the exit status (0)."""
    print(f"arrayprop {__version__}")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.platform()}, {os.cpu_count()} CPUs"
    )
    print(f"NumPy {np.__version__}, BLAS: {blas_report()}")
    print(f"BLAS threads: {blas_threads_report()}")
    print(f"plain SGD folded into the weight-gradient GEMM on numpy: {kernels.fused_sgd_status()}")
    for line in bf16_report():
        print(line)
    print("backends:")
    rows = describe_backends()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = "usable" if r["usable"] else ("installed" if r["installed"] else "missing")
        version = r["version"] or "-"
        where = ", ".join(r["devices"]) if r["usable"] else r["note"]
        print(f"  {r['name']:<{width}}  {version:<12} {status:<9}  {where}")
    return 0
