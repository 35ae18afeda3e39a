"""The child side of :func:`arrayprop.bench.measure_memory`: one step's peak memory.

``python -m arrayprop.bench.memory_child '<spec as JSON>'`` builds the workload, warms it up
once and prints one line, ``RESULT_PREFIX`` followed by the result as JSON. It runs in a
fresh interpreter so that the process's resident high-water mark belongs to that one
workload; nothing in the package imports this module.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Sequence

from arrayprop.bench.memory import CHILD_MODULE, RESULT_PREFIX
from arrayprop.bench.workloads import make_workload


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


def measure_step(spec: dict) -> dict:
    """Build the workload ``spec`` names, warm it up once, then measure one step's peak.

    Meant for a fresh interpreter (see :func:`main`): the resident high-water mark counts
    everything the process ever held.

    Parameters
    ----------
    spec
        ``impl``, ``config`` and ``backend``, and optionally ``device``, ``batch`` and ``seed``:
        the arguments of :func:`~arrayprop.bench.workloads.make_workload`.

    Returns
    -------
    dict
        The workload's names, the method used and the byte counts (``peak_step_bytes`` always).
    """
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


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the spec given as the one argument (JSON) and print the result line."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print(f"usage: python -m {CHILD_MODULE} '<spec as JSON>'", file=sys.stderr)
        return 2
    print(RESULT_PREFIX + json.dumps(measure_step(json.loads(args[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
