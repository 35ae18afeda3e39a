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
import dataclasses
import datetime as _dt
import gc
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence

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
from .environment import environment
from .memory import _memory_child as _memory_child
from .memory import measure_memory
from .report import (
    DETAIL_HEADER as DETAIL_HEADER,
)
from .report import (
    MEMORY_HEADER as MEMORY_HEADER,
)
from .report import (
    SUMMARY_HEADER as SUMMARY_HEADER,
)
from .report import (
    format_report,
    write_json,
    write_markdown,
    write_plot,
)
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
