"""``arrayprop info``: versions, backends, devices and the BLAS NumPy uses."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

import numpy as np

from arrayprop import kernels
from arrayprop.backends import describe_backends
from arrayprop.backends.threads import blas_pools, describe_rule
from arrayprop.version import __version__

__all__ = ["add_parser", "blas_report", "blas_threads_report", "run"]


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
    print("backends:")
    rows = describe_backends()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = "usable" if r["usable"] else ("installed" if r["installed"] else "missing")
        version = r["version"] or "-"
        where = ", ".join(r["devices"]) if r["usable"] else r["note"]
        print(f"  {r['name']:<{width}}  {version:<12} {status:<9}  {where}")
    return 0
