"""Peak memory of one train step, each measured in a fresh interpreter.

:func:`measure_memory` starts ``python -c`` with a script that imports
``arrayprop.bench._memory_child``; the child builds the workload, warms it up once and
reports, as one JSON line, the resident high-water mark of one more step (CPU) or the
allocator's peak (CUDA).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from arrayprop.bench.configs import BenchConfig
from arrayprop.bench.workloads import make_workload

_MEMORY_CHILD = """
import json, sys
from arrayprop.bench import _memory_child
print("ARRAYPROP_MEMORY " + json.dumps(_memory_child(json.loads(sys.argv[1]))))
"""


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM); Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(spec: dict) -> dict:
    """Run in a fresh interpreter: build, warm up once, then measure one step's peak."""
    import resource

    wl = make_workload(
        spec["impl"],
        spec["config"],
        spec["backend"],
        spec.get("device"),
        spec.get("batch"),
        spec.get("seed", 0),
    )
    dev = wl.device
    gc.collect()
    result = {
        "impl": wl.impl,
        "config": wl.config.name,
        "backend": wl.backend,
        "device": dev,
        "batch": wl.batch,
    }
    if dev.startswith("cuda") and wl.impl != "numpy-ref":
        return _gpu_memory(wl, result)
    rss_built = _proc_status_kib("VmRSS")
    out = wl.step()  # warm-up: lazy initialisation, allocator caches, .grad buffers
    wl.sync(out)
    del out
    gc.collect()
    rss_warm = _proc_status_kib("VmRSS")
    if rss_built is not None and _reset_peak_rss():
        method = "VmHWM reset after warm-up"
    else:
        method = "ru_maxrss (peak over warm-up and step)"
    out = wl.step()
    wl.sync(out)
    peak = _proc_status_kib("VmHWM") if method.startswith("VmHWM") else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "ru_maxrss (peak over warm-up and step)"
    result.update(
        method=method,
        rss_after_build_bytes=1024 * (rss_built or 0),
        rss_after_warmup_bytes=1024 * (rss_warm or 0),
        peak_rss_bytes=1024 * peak,
        peak_step_bytes=1024 * (peak - (rss_built or 0)),
    )
    return result


def _gpu_memory(wl, result):  # pragma: no cover - needs a GPU
    if wl.backend == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        base = pool.used_bytes()
        out = wl.step()
        wl.sync(out)
        del out
        out = wl.step()
        wl.sync(out)
        peak = pool.total_bytes()
        method = "cupy default pool total_bytes (upper bound)"
    else:
        import torch

        base = torch.cuda.memory_allocated()
        out = wl.step()
        wl.sync(out)
        del out
        torch.cuda.reset_peak_memory_stats()
        out = wl.step()
        wl.sync(out)
        peak = torch.cuda.max_memory_allocated()
        method = "torch.cuda.max_memory_allocated after warm-up"
    result.update(method=method, device_base_bytes=base, peak_step_bytes=peak - base)
    return result


def measure_memory(impl, cfg, backend="numpy", device=None, batch=None, seed=0, timeout=600):
    """Peak memory of one train step, measured in a fresh subprocess (see docs)."""
    name = cfg.name if isinstance(cfg, BenchConfig) else cfg
    spec = {
        "impl": impl,
        "config": name,
        "backend": backend,
        "device": device,
        "batch": batch,
        "seed": seed,
    }
    env = dict(os.environ)
    # parents[2]: the directory that holds the arrayprop package (src/ in a checkout)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("ARRAYPROP_MEMORY "):
            return json.loads(line.split(" ", 1)[1])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"memory child for {impl}/{name}/{backend} failed: {tail[0]}")
