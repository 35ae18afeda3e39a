"""Benchmark harness: arrayprop train steps vs a GEMM ceiling, PyTorch eager and plain NumPy.

Shared by ``arrayprop bench`` (through :func:`add_arguments` / :func:`run_from_args`) and
the pytest-benchmark suite in ``benchmarks/``. See ``docs/benchmarks.md`` for the method.

Four implementations are timed for every (config, backend):

``arrayprop``
    ``arrayprop.train_step`` (forward, loss, backward, SGD update) on the backend.
``gemm``
    The GEMM ceiling: only the matrix products a train step must do, per Dense layer
    ``i`` with input ``A`` (batch x n_in), weight ``W`` (n_in x n_out) and output
    gradient ``D`` (batch x n_out): forward ``A @ W``, weight gradient ``A.T @ D``, and
    input gradient ``D @ W.T`` for every layer *except the first*, whose input is the
    data and needs no gradient. Same backend namespace, same dtype, fresh output
    arrays (as in a real step). ``efficiency = t_gemm / t_step``.
``torch-eager``
    The PyTorch peer: ``nn.Sequential`` of ``Linear`` + ``ReLU``, autograd,
    ``torch.optim.SGD(lr=0.01)``, ``F.cross_entropy`` / ``F.mse_loss``,
    ``zero_grad(set_to_none=True)``, same device and dtype, torch's default threads.
``numpy-ref``
    ``benchmarks/reference_numpy.py``: a hand-written NumPy matrix-backprop loop,
    float32 throughout (the overhead floor on CPU).

This module imports numpy eagerly and torch / cupy / jax / matplotlib lazily.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import gc
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .configs import (
    BACKENDS,
    CONFIGS,
    DTYPE,
    IMPLS,
    LR,
    SWEEP_BATCHES,
    SWEEP_CONFIG,
    BenchConfig,
    _parse_names,
    gemm_flops,
    gemm_shapes,
    get_configs,
    make_data,
)
from .memory import _memory_child as _memory_child
from .memory import measure_memory
from .timing import Measurement, time_workload, time_workloads
from .workloads import (
    Workload,
    _arrayprop_backend,
    _pool,
    load_reference,
    make_workload,
    torch_device_for,
)
from .workloads import (
    _gemm_workload as _gemm_workload,
)
from .workloads import (
    torch_peer as torch_peer,
)

__all__ = [
    "BACKENDS",
    "CONFIGS",
    "IMPLS",
    "LR",
    "SWEEP_BATCHES",
    "BenchConfig",
    "Measurement",
    "Workload",
    "add_arguments",
    "environment",
    "gemm_flops",
    "gemm_shapes",
    "load_reference",
    "make_data",
    "make_workload",
    "measure_memory",
    "run_benchmarks",
    "run_from_args",
    "time_workload",
    "time_workloads",
    "write_json",
    "write_markdown",
    "write_plot",
]

SCHEMA = "arrayprop-bench/1"


# --------------------------------------------------------------------------- environment


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
    try:  # optional: only if the user already has it
        threadpoolctl = importlib.import_module("threadpoolctl")
        info["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for p in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        info["threads"] = _openblas_threads()
    return info


def _openblas_threads() -> int | str:
    """OpenBLAS's thread count via ctypes (what threadpoolctl does), best effort."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        libs = set()
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in (
            "scipy_openblas_get_num_threads64_",
            "openblas_get_num_threads64_",
            "openblas_get_num_threads",
        ):
            fn = getattr(handle, sym, None)
            if fn is not None:
                return int(fn())
    return "unknown (default: all cores unless OPENBLAS_NUM_THREADS/OMP_NUM_THREADS set)"


def _git_describe() -> str | None:
    """``git describe --always --dirty`` of the source checkout arrayprop runs from, if any."""
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
    import arrayprop
    from arrayprop import kernels

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
        "arrayprop": getattr(arrayprop, "__version__", "?"),
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


# --------------------------------------------------------------------------- running


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def run_benchmarks(
    configs: Sequence[str] | str | None = None,
    backends: Sequence[str] | str = ("numpy",),
    *,
    device: str | None = None,
    repeat: int = 20,
    warmup: int = 3,
    max_time: float | None = 5.0,
    min_sample_time: float = 0.05,
    peer: bool = True,
    reference: bool = True,
    sweep: bool = False,
    sweep_batches: Sequence[int] = SWEEP_BATCHES,
    memory: bool = False,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the suite and return the result document (what :func:`write_json` stores)."""
    cfgs = get_configs(configs)
    backends = _parse_names(backends, BACKENDS, "backend")
    log = log or (lambda s: None)
    load_start = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    peer = peer and _torch_available()
    if reference:
        try:
            load_reference()
        except FileNotFoundError as exc:
            log(f"note: {exc}; skipping numpy-ref")
            reference = False
    for b in backends:  # fail early, with a clear message, on a missing backend
        _arrayprop_backend(b, device)
    # one PyTorch-eager peer per distinct torch device (cpu for numpy, cuda for cupy, ...)
    by_device: dict[str, str] = {}
    for b in backends if peer else ():
        by_device.setdefault(torch_device_for(b, device), b)
    peer_backends = list(by_device.values())
    timing = {
        "warmup": warmup,
        "repeat": repeat,
        "max_time": max_time,
        "min_sample_time": min_sample_time,
    }

    def run_one(cfg, batch=None, is_sweep=False):
        specs = [(impl, b) for b in backends for impl in ("arrayprop", "gemm")]
        specs += [("torch-eager", b) for b in peer_backends]
        if reference:
            specs.append(("numpy-ref", "numpy"))
        # group by thread pool (numpy first) so that interleaving switches library rarely
        pools = list(dict.fromkeys(["numpy"] + [_pool(i, b) for i, b in specs]))
        specs.sort(key=lambda s: pools.index(_pool(*s)))
        wls = [make_workload(impl, cfg, b, device, batch, seed) for impl, b in specs]
        ms = time_workloads(wls, sweep=is_sweep, **timing)
        del wls
        gc.collect()
        for m in ms:
            log(
                f"  {cfg.name:<7} b={m.batch:<5} {m.impl:<11} {m.backend}@{m.device:<6} "
                f"{m.ms_per_step:10.3f} ms/step  IQR {1e3 * m.iqr_s:.3f}  "
                f"({len(m.times_s)}x{m.steps_per_sample})"
            )
        return ms

    results: list[Measurement] = []
    for cfg in cfgs:
        log(f"{cfg.name}: {cfg.describe()}")
        results += run_one(cfg)
    sweep_results: list[Measurement] = []
    if sweep:
        cfg = CONFIGS[SWEEP_CONFIG]
        for bs in sweep_batches:
            log(f"sweep {cfg.name} batch {bs}")
            sweep_results += run_one(cfg, bs, True)
    mem = []
    if memory:
        for cfg in cfgs:
            impls = [("arrayprop", b) for b in backends]
            impls += [("torch-eager", b) for b in peer_backends]
            if reference:
                impls.append(("numpy-ref", "numpy"))
            for impl, b in impls:
                r = measure_memory(impl, cfg, b, device, None, seed)
                log(
                    f"  memory {cfg.name:<7} {impl:<11} {b:<6} "
                    f"{r['peak_step_bytes'] / 2**20:9.1f} MiB"
                )
                mem.append(r)
    return {
        "schema": SCHEMA,
        "env": environment(backends, peer),
        "settings": {
            **timing,
            "configs": [c.name for c in cfgs],
            "backends": backends,
            "device": device,
            "dtype": DTYPE,
            "lr": LR,
            "seed": seed,
            "peer": peer,
            "reference": reference,
            "started_utc": started,
            "loadavg_start": load_start,
        },
        "configs": {c.name: dataclasses.asdict(c) for c in cfgs},
        "results": [m.to_dict() for m in results],
        "summary": summarize(results),
        "sweep": [m.to_dict() for m in sweep_results],
        "sweep_summary": summarize(sweep_results),
        "memory": mem,
    }


def _as_dict(m) -> dict:
    return m.to_dict() if isinstance(m, Measurement) else m


def summarize(results: Sequence[Measurement | dict]) -> list[dict]:
    """One row per (config, batch, arrayprop backend) with the ratios of the table.

    ``gemm_efficiency = t_gemm / t_step`` (same backend); ``vs_torch_eager =
    t_torch / t_step`` and ``vs_numpy_ref = t_ref / t_step`` (> 1: arrayprop is faster).
    """
    rows = [_as_dict(m) for m in results]
    by_key = {}
    for r in rows:
        by_key.setdefault((r["config"], r["batch"], r["impl"]), []).append(r)
    out = []
    for r in rows:
        if r["impl"] != "arrayprop":
            continue
        key = (r["config"], r["batch"])
        t = r["median_s"]
        gemm = next(
            (
                g
                for g in by_key.get((*key, "gemm"), [])
                if g["backend"] == r["backend"] and g["device"] == r["device"]
            ),
            None,
        )
        peers = by_key.get((*key, "torch-eager"), [])
        tdev = torch_device_for(r["backend"], r["device"] if r["device"] != "cpu" else None)
        peer = next((p for p in peers if p["device"] == tdev), peers[0] if peers else None)
        ref = next(iter(by_key.get((*key, "numpy-ref"), [])), None)
        out.append(
            {
                "config": r["config"],
                "backend": r["backend"],
                "device": r["device"],
                "batch": r["batch"],
                "samples_per_s": r["samples_per_s"],
                "ms_per_step": r["ms_per_step"],
                "iqr_ms": 1e3 * r["iqr_s"],
                "gemm_ms_per_step": gemm and gemm["ms_per_step"],
                "gemm_efficiency": gemm and gemm["median_s"] / t,
                "torch_eager_ms_per_step": peer and peer["ms_per_step"],
                "vs_torch_eager": peer and peer["median_s"] / t,
                "numpy_ref_ms_per_step": ref and ref["ms_per_step"],
                "vs_numpy_ref": ref and ref["median_s"] / t,
            }
        )
    return out


# --------------------------------------------------------------------------- output


def _fmt(v, spec, suffix=""):
    return "n/a" if v is None else format(v, spec) + suffix


SUMMARY_HEADER = (
    "config",
    "backend",
    "batch",
    "samples/s",
    "ms/step",
    "% of GEMM ceiling",
    "vs PyTorch eager",
    "vs NumPy loop",
)
DETAIL_HEADER = (
    "config",
    "impl",
    "backend@device",
    "batch",
    "ms/step (median)",
    "IQR ms",
    "min ms",
    "samples/s",
    "GFLOP/s",
    "samples x steps",
)


def summary_rows(doc: dict, key: str = "summary") -> list[tuple[str, ...]]:
    return [
        (
            s["config"],
            f"{s['backend']}@{s['device']}",
            str(s["batch"]),
            f"{s['samples_per_s']:,.0f}",
            f"{s['ms_per_step']:.3f}",
            _fmt(s["gemm_efficiency"] and 100 * s["gemm_efficiency"], ".0f", "%"),
            _fmt(s["vs_torch_eager"], ".2f", "x"),
            _fmt(s["vs_numpy_ref"], ".2f", "x"),
        )
        for s in doc[key]
    ]


def detail_rows(doc: dict, key: str = "results") -> list[tuple[str, ...]]:
    return [
        (
            r["config"],
            r["impl"],
            f"{r['backend']}@{r['device']}",
            str(r["batch"]),
            f"{r['ms_per_step']:.3f}",
            f"{1e3 * r['iqr_s']:.3f}",
            f"{1e3 * r['min_s']:.3f}" if "min_s" in r else "n/a",
            f"{r['samples_per_s']:,.0f}",
            _fmt(r["gflops"], ".1f"),
            f"{r['repeat']}x{r['steps_per_sample']}",
        )
        for r in doc[key]
    ]


MEMORY_HEADER = ("config", "impl", "backend@device", "peak step memory (MiB)", "method")


def memory_rows(doc: dict) -> list[tuple[str, ...]]:
    return [
        (
            m["config"],
            m["impl"],
            f"{m['backend']}@{m['device']}",
            f"{m['peak_step_bytes'] / 2**20:.1f}",
            m["method"],
        )
        for m in doc.get("memory", [])
    ]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(
            f"{c:>{w}}" if i >= 2 else f"{c:<{w}}"
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(out)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], n_left: int = 2) -> str:
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < n_left else "---:" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _env_lines(env: dict) -> list[str]:
    blas = env.get("numpy", {}).get("blas", {})
    lines = [
        f"- CPU: {env.get('cpu_model')} ({env.get('cpu_count')} logical cores, "
        f"{env.get('cpu_affinity')} usable; 1/5/15-min load average at the end "
        f"{env.get('loadavg')})",
        f"- Python {env.get('python')} on {env.get('platform')}",
        f"- arrayprop {env.get('arrayprop')} (git {env.get('arrayprop_git')}), "
        f"NumPy {env['numpy']['version']} "
        f"(BLAS: {blas.get('name', '?')} {blas.get('version', '')}, "
        f"threads: {blas.get('threads', blas.get('threadpools', '?'))}); plain SGD folded "
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


def format_report(doc: dict) -> str:
    parts = [format_table(SUMMARY_HEADER, summary_rows(doc))]
    parts += ["", "all measurements:", format_table(DETAIL_HEADER, detail_rows(doc))]
    if doc.get("sweep_summary"):
        parts += [
            "",
            f"batch sweep ({SWEEP_CONFIG}):",
            format_table(SUMMARY_HEADER, summary_rows(doc, "sweep_summary")),
        ]
    if doc.get("memory"):
        parts += [
            "",
            "peak memory of one train step:",
            format_table(MEMORY_HEADER, memory_rows(doc)),
        ]
    s = doc.get("settings", {})
    parts += ["", *_env_lines(doc["env"])]
    parts.append(f"- started {s.get('started_utc', '?')} at load average {s.get('loadavg_start')}")
    return "\n".join(parts)


def write_json(doc: dict, path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def to_markdown(doc: dict) -> str:
    s = doc["settings"]
    parts = [
        "## arrayprop train-step benchmark",
        "",
        *_env_lines(doc["env"]),
        f"- timing: {s['warmup']} warm-up steps, up to {s['repeat']} samples "
        f"(>= {s['min_sample_time']} s each, at most ~{s['max_time']} s per measurement), "
        f"medians; dtype {s['dtype']}, lr {s['lr']}; started {s.get('started_utc', '?')} "
        f"at load average {s.get('loadavg_start', '?')}",
        "",
        "Ratios: `% of GEMM ceiling` = t_gemm / t_step; `vs PyTorch eager` = t_torch / t_step; "
        "`vs NumPy loop` = t_numpy_ref / t_step (> 1.00x: arrayprop is faster).",
        "",
        markdown_table(SUMMARY_HEADER, summary_rows(doc)),
        "",
        "### All measurements",
        "",
        markdown_table(DETAIL_HEADER, detail_rows(doc), 3),
    ]
    if doc.get("sweep"):
        parts += [
            "",
            f"### Batch-size sweep ({SWEEP_CONFIG})",
            "",
            markdown_table(SUMMARY_HEADER, summary_rows(doc, "sweep_summary")),
            "",
            markdown_table(DETAIL_HEADER, detail_rows(doc, "sweep"), 3),
        ]
    if doc.get("memory"):
        parts += [
            "",
            "### Peak memory of one train step",
            "",
            markdown_table(MEMORY_HEADER, memory_rows(doc), 3),
        ]
    return "\n".join(parts) + "\n"


def write_markdown(doc: dict, path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(to_markdown(doc))


def _series_label(r: dict) -> str:
    if r["impl"] == "arrayprop":
        return f"arrayprop[{r['backend']}@{r['device']}]"
    if r["impl"] == "gemm":
        return f"GEMM ceiling[{r['backend']}@{r['device']}]"
    if r["impl"] == "torch-eager":
        return f"PyTorch eager[{r['device']}]"
    return "NumPy loop"


def write_plot(doc: dict, path: str | os.PathLike) -> None:
    """Bar chart of samples/s per config and implementation (+ sweep curves if present).

    Raises ``RuntimeError`` with an install hint when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib: pip install 'arrayprop[plot]' (or matplotlib>=3.7)"
        ) from exc
    results, sweep = doc["results"], doc.get("sweep") or []
    ncols = 2 if sweep else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 4.8), squeeze=False)
    ax = axes[0][0]
    configs = list(dict.fromkeys(r["config"] for r in results))
    labels = list(dict.fromkeys(_series_label(r) for r in results))
    width = 0.8 / max(1, len(labels))
    for j, lab in enumerate(labels):
        xs, ys = [], []
        for i, c in enumerate(configs):
            r = next((r for r in results if r["config"] == c and _series_label(r) == lab), None)
            if r is not None:
                xs.append(i + (j - (len(labels) - 1) / 2) * width)
                ys.append(r["samples_per_s"])
        ax.bar(xs, ys, width, label=lab)
    ax.set_xticks(range(len(configs)), configs)
    ax.set_yscale("log")
    ax.set_ylabel("samples / s (median)")
    ax.set_title("train step throughput (float32)")
    ax.legend(fontsize=8)
    if sweep:
        ax = axes[0][1]
        for lab in dict.fromkeys(_series_label(r) for r in sweep):
            pts = sorted((r["batch"], r["samples_per_s"]) for r in sweep if _series_label(r) == lab)
            style = "--" if lab.startswith(("GEMM", "PyTorch", "NumPy")) else "-"
            ax.plot(*zip(*pts, strict=True), style, marker="o", ms=3, label=lab)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples / s (median)")
        ax.set_title(f"batch-size sweep: {SWEEP_CONFIG}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``arrayprop bench`` options to ``parser``."""
    parser.add_argument(
        "--backends",
        default="numpy",
        help=f"comma-separated arrayprop backends (default: numpy; valid: {', '.join(BACKENDS)})",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated configs (default: all; valid: {', '.join(CONFIGS)})",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"also sweep batch sizes {SWEEP_BATCHES[0]}..{SWEEP_BATCHES[-1]} on {SWEEP_CONFIG}",
    )
    parser.add_argument("--repeat", type=int, default=20, help="timed samples (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps (default: 3)")
    parser.add_argument(
        "--max-time",
        type=float,
        default=5.0,
        help="seconds per measurement; fewer samples (>= 3) for heavy "
        "configs (default: 5; 0 = no limit)",
    )
    parser.add_argument(
        "--device", default=None, help="device for the backends and the peer (e.g. cpu, cuda:0)"
    )
    parser.add_argument("--json", metavar="PATH", help="write all raw timings + env as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write a Markdown report")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch-eager peer")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also measure peak memory of one step (fresh subprocesses)",
    )
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``arrayprop bench``; raises ``ValueError`` for bad names/options."""
    configs = get_configs(args.configs)  # validate before any work
    backends = _parse_names(args.backends, BACKENDS, "backend")
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError("--repeat must be >= 1 and --warmup >= 0")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install 'arrayprop[plot]'")
    doc = run_benchmarks(
        [c.name for c in configs],
        backends,
        device=args.device,
        repeat=args.repeat,
        warmup=args.warmup,
        max_time=args.max_time or None,
        peer=not args.no_peer,
        sweep=args.sweep,
        memory=args.memory,
        seed=getattr(args, "seed", 0),
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(format_report(doc))
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        write_markdown(doc, args.markdown)
        print(f"wrote {args.markdown}")
    if args.plot:
        write_plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arrayprop.bench", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
