"""The whole suite: :func:`run_benchmarks` times every (config, backend, implementation)
and returns the result document, with the ratios of :func:`summarize`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import importlib.util
from collections.abc import Callable, Sequence

from arrayprop.bench.configs import (
    BACKENDS,
    CONFIGS,
    DTYPE,
    LR,
    SWEEP_BATCHES,
    SWEEP_CONFIG,
    get_configs,
    parse_names,
)
from arrayprop.bench.environment import environment
from arrayprop.bench.memory import measure_memory
from arrayprop.bench.timing import NOISY_IQR, Measurement, loadavg, time_workloads
from arrayprop.bench.workloads import (
    arrayprop_backend,
    has_reference,
    make_workload,
    thread_pool,
    torch_device_for,
)

SCHEMA = "arrayprop-bench/1"


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
    backends = parse_names(backends, BACKENDS, "backend")
    log = log or (lambda s: None)
    load_start = loadavg()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    peer = peer and _torch_available()
    for b in backends:  # fail early, with a clear message, on a missing backend
        arrayprop_backend(b, device)
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
        if reference and has_reference(cfg):
            specs.append(("numpy-ref", "numpy"))
        # group by thread pool (numpy first) so that interleaving switches library rarely
        pools = list(dict.fromkeys(["numpy"] + [thread_pool(i, b) for i, b in specs]))
        specs.sort(key=lambda s: pools.index(thread_pool(*s)))
        wls = [make_workload(impl, cfg, b, device, batch, seed) for impl, b in specs]
        ms = time_workloads(wls, sweep=is_sweep, **timing)
        del wls
        gc.collect()
        for m in ms:
            log(
                f"  {cfg.name:<7} b={m.batch:<5} {m.impl:<11} {m.backend}@{m.device:<6} "
                f"{m.ms_per_step:10.3f} ms/step  IQR {1e3 * m.iqr_s:.3f}  "
                f"({len(m.times_s)}x{m.steps_per_sample})"
                + (
                    f"  noisy (IQR > {NOISY_IQR:.0%} of the median; load {m.loadavg})"
                    if m.noisy
                    else ""
                )
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
            if reference and has_reference(cfg):
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
            "loadavg_end": loadavg(),
            "noisy_iqr": NOISY_IQR,
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


def is_noisy(r: dict) -> bool:
    """Whether a result row (a :meth:`Measurement.to_dict`) is noisy; rows of older documents
    without the flag are judged by their IQR."""
    if "noisy" in r:
        return bool(r["noisy"])
    return r["iqr_s"] > NOISY_IQR * r["median_s"]


def summarize(results: Sequence[Measurement | dict]) -> list[dict]:
    """One row per (config, batch, arrayprop backend) with the ratios of the table.

    ``gemm_efficiency = t_gemm / t_step`` (same backend); ``vs_torch_eager =
    t_torch / t_step`` and ``vs_numpy_ref = t_ref / t_step`` (> 1: arrayprop is faster).
    ``noisy`` lists the implementations of the row whose measurement is noisy
    (:data:`~arrayprop.bench.timing.NOISY_IQR`): their ratios deserve less trust.
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
        # Only the peer on the same device: never a CPU peer for a CUDA row, or the reverse.
        peer = next((p for p in peers if p["device"] == tdev), None)
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
                "noisy": [m["impl"] for m in (r, gemm, peer, ref) if m and is_noisy(m)],
            }
        )
    return out
