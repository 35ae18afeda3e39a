"""The machine and libraries a result was measured on: :func:`environment`.

CPU model, core count, affinity and load; Python, NumPy's BLAS and its thread count, the
fused-SGD kernel's status; torch, CuPy, JAX and nvidia-smi when used; the git revision of
the checkout. :func:`env_lines` turns that dictionary into the report's bullet list.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arrayprop import kernels
from arrayprop.backends.threads import blas_pools
from arrayprop.version import __version__


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> dict:
    info: dict[str, Any] = {}
    try:
        with contextlib.redirect_stdout(None):
            cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info = {
            k: blas.get(k) for k in ("name", "version", "openblas configuration") if blas.get(k)
        }
    except Exception:  # old NumPy without mode="dicts"
        pass
    info["threadpools"] = [
        {k: p[k] for k in ("internal_api", "num_threads", "version", "architecture")}
        for p in blas_pools()
    ]
    return info


def _git_describe() -> str | None:
    """``git describe --always --dirty`` of the source checkout arrayprop runs from, if any."""
    # parents[3]: the checkout root above src/arrayprop/bench/
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(backends: Sequence[str] = ("numpy",), torch_peer: bool = True) -> dict:
    """Machine and library description stored with every result."""
    env: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "thread_env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
        "arrayprop": __version__,
        "arrayprop_git": _git_describe(),
        "numpy": {
            "version": np.__version__,
            "blas": _numpy_blas(),
            "fused_sgd": kernels.fused_sgd_status(),
        },
    }
    with contextlib.suppress(ImportError):
        env["array_api_compat"] = importlib.import_module("array_api_compat").__version__
    if "torch" in backends or torch_peer:
        with contextlib.suppress(ImportError):
            import torch

            cfg = torch.__config__.show()
            blas = next(
                (
                    p.split("=", 1)[1]
                    for p in cfg.replace(",", "\n").split()
                    if p.startswith("BLAS_INFO=")
                ),
                None,
            )
            env["torch"] = {
                "version": torch.__version__,
                "num_threads": torch.get_num_threads(),
                "num_interop_threads": torch.get_num_interop_threads(),
                "blas": blas,
                "cuda": torch.version.cuda,
            }
            if torch.cuda.is_available():
                env["torch"]["gpu"] = torch.cuda.get_device_name()
    if "cupy" in backends:
        with contextlib.suppress(Exception):
            import cupy

            rt = cupy.cuda.runtime
            props = rt.getDeviceProperties(cupy.cuda.Device().id)
            env["cupy"] = {
                "version": cupy.__version__,
                "cuda_runtime": rt.runtimeGetVersion(),
                "driver": rt.driverGetVersion(),
                "gpu": props["name"].decode()
                if isinstance(props["name"], bytes)
                else props["name"],
            }
    if "jax" in backends:
        with contextlib.suppress(ImportError):
            import jax

            env["jax"] = {"version": jax.__version__, "devices": [str(d) for d in jax.devices()]}
    if "array_api_strict" in backends:
        with contextlib.suppress(ImportError):
            env["array_api_strict"] = importlib.import_module("array_api_strict").__version__
    with contextlib.suppress(Exception):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if smi.returncode == 0 and smi.stdout.strip():
            env["nvidia_smi"] = smi.stdout.strip().splitlines()
    return env


def _threads_text(blas: dict) -> str:
    """The BLAS thread count(s) of a result: threadpoolctl's pools (older results: ``threads``)."""
    pools = blas.get("threadpools")
    if pools:
        return ", ".join(f"{p.get('num_threads')} ({p.get('internal_api')})" for p in pools)
    return str(blas.get("threads", "?"))


def _git_text(describe: str | None) -> str:
    """``git <describe>``, or what an installed copy has instead of a revision."""
    return f"git {describe}" if describe else "not a git checkout"


def env_lines(env: dict) -> list[str]:
    """The report's Markdown bullet list (one ``- ...`` line per item) for an :func:`environment`
    dictionary, as read back from a result document (missing items show as ``None``)."""
    blas = env.get("numpy", {}).get("blas", {})
    lines = [
        f"- CPU: {env.get('cpu_model')} ({env.get('cpu_count')} logical cores, "
        f"{env.get('cpu_affinity')} usable; 1/5/15-min load average at the end "
        f"{env.get('loadavg')})",
        f"- Python {env.get('python')} on {env.get('platform')}",
        f"- arrayprop {env.get('arrayprop')} ({_git_text(env.get('arrayprop_git'))}), "
        f"NumPy {env['numpy']['version']} "
        f"(BLAS: {blas.get('name', '?')} {blas.get('version', '')}, "
        f"threads: {_threads_text(blas)}); plain SGD folded "
        f"into the weight-gradient GEMM: {env['numpy'].get('fused_sgd', '?')}",
    ]
    if "torch" in env:
        t = env["torch"]
        lines.append(
            f"- torch {t['version']} (BLAS {t['blas']}, {t['num_threads']} intra-op / "
            f"{t['num_interop_threads']} inter-op threads, CUDA {t['cuda']}"
            f"{', ' + t['gpu'] if t.get('gpu') else ''})"
        )
    if "cupy" in env:
        c = env["cupy"]
        lines.append(
            f"- CuPy {c['version']} on {c['gpu']} (CUDA runtime {c['cuda_runtime']}, "
            f"driver {c['driver']})"
        )
    if "nvidia_smi" in env:
        lines.append(f"- nvidia-smi: {'; '.join(env['nvidia_smi'])}")
    if env.get("thread_env"):
        lines.append(f"- thread env: {env['thread_env']}")
    lines.append(f"- date (UTC): {env.get('date_utc')}")
    return lines
