"""Peak memory of ``fit`` streaming a memmap 4x larger than its ``max_device_bytes`` budget.

    python benchmarks/memory_streaming.py                      # 32 MiB of data, 8 MiB budget
    python benchmarks/memory_streaming.py --data-mib 64 --budget-mib 8 --backends numpy,torch
    python benchmarks/memory_streaming.py --json memory.json   # also write the numbers

The data set (float32 features, 64 per sample, and int64 labels) is written to a temporary
directory and opened with ``numpy.load(mmap_mode="r")``; one epoch of ``fit`` (an MLP 64-32-10,
SGD, batches of 256, shuffled) trains on it twice per backend: *streamed* with the budget, and
*resident* with a budget larger than the data (the whole set copied in first), for contrast.

Each measurement runs in a fresh interpreter, after a warm-up fit on a few rows (imports, lazy
initialisation, allocator caches), and reports memory *growth* over what the process held
just before the measured fit:

``tracemalloc``
    Peak of the allocations NumPy reports to tracemalloc (all of NumPy's array data) and
    Python's own. The pages of the memmap are file-backed, not allocations, so this is exactly
    what training copies out of the file: chunks, conversions, the NaN/inf scan's masks, the
    shuffled order, plus the model and its activations. Run separately, since tracemalloc's
    bookkeeping itself uses memory. Torch's own allocations are not seen (on the CPU a chunk
    of the model's dtype is shared with NumPy, not copied).
``anon``
    Peak of ``RssAnon`` (anonymous resident memory: heap, malloc'd arrays, torch tensors),
    sampled from /proc/self/status every 0.5 ms by a thread. Allocations that live less
    than a sample interval can be missed; the chunks live for many steps. Includes what
    the C allocator keeps after a free.
``hwm``
    Growth of ``VmHWM``, the kernel's resident high-water mark, reset just before the fit
    (/proc/self/clear_refs). It also counts the memmap's *file-backed* pages, which stay mapped
    once read: after an epoch that is the whole data set, although the kernel can drop those
    clean pages at any time under memory pressure. It shows why RSS alone overstates what
    streaming costs.

A C allocator keeps part of what is freed: glibc's dynamic mmap threshold makes the freed
chunk buffers reusable heap that still counts in RssAnon (with torch, about 1-3 MiB above the
live allocations here); ``MALLOC_MMAP_THRESHOLD_=65536`` returns them to the system at once.

Linux only (/proc). The numbers in docs/reliability.md come from this script.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

FEATURES = 64
CLASSES = 10
BATCH = 256


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class _AnonSampler(threading.Thread):
    """Samples RssAnon every ``interval`` seconds until stopped; keeps the maximum."""

    def __init__(self, interval: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_kib = interval, _status_kib("RssAnon")
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib("RssAnon"))
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak_kib = max(self.peak_kib, _status_kib("RssAnon"))
        return self.peak_kib


def make_data(directory: Path, data_mib: float) -> tuple[Path, Path, int]:
    """Write x (n, 64) float32 and y (n,) int64 as .npy files; return their paths and n."""
    n = int(data_mib * 2**20) // (FEATURES * 4)
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(directory / "x.npy", "w+", np.float32, (n, FEATURES))
    for start in range(0, n, 16384):
        stop = min(start + 16384, n)
        x[start:stop] = rng.standard_normal((stop - start, FEATURES), dtype=np.float32)
    y = np.lib.format.open_memmap(directory / "y.npy", "w+", np.int64, (n,))
    y[:] = rng.integers(0, CLASSES, n)
    x.flush()
    y.flush()
    del x, y
    return directory / "x.npy", directory / "y.npy", n


def child(spec: dict) -> dict:
    """One measured fit, in this (fresh) interpreter."""
    import arrayprop as ap

    x = np.load(spec["x"], mmap_mode="r")
    y = np.load(spec["y"], mmap_mode="r")
    model = ap.mlp([FEATURES, 32, CLASSES], seed=0, backend=spec["backend"], dtype="float32")

    def run(xs, ys, budget):
        return ap.fit(model, xs, ys, loss="softmax-ce", optimizer="sgd", epochs=1,
                      batch_size=BATCH, progress=None, seed=0, max_device_bytes=budget)  # fmt: skip

    run(np.asarray(x[:1024]), np.asarray(y[:1024]), 2**16)  # warm-up (also streams)
    gc.collect()
    out = {**spec, "data_bytes": int(x.nbytes + y.nbytes)}
    t0 = time.perf_counter()
    if spec["measure"] == "tracemalloc":
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        history = run(x, y, spec["budget"])
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    else:
        anon0, rss0 = _status_kib("RssAnon"), _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        sampler = _AnonSampler()
        sampler.start()
        history = run(x, y, spec["budget"])
        out["anon_peak_bytes"] = 1024 * (sampler.stop() - anon0)
        out["hwm_growth_bytes"] = 1024 * (_status_kib("VmHWM") - rss0)
    out["seconds_while_measured"] = time.perf_counter() - t0  # slowed by the measuring
    out["loss"] = history.loss[-1]
    return out


def measure(spec: dict) -> dict:
    env = dict(os.environ)
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, check=True)  # fmt: skip
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-mib", type=float, default=32.0)
    parser.add_argument("--budget-mib", type=float, default=8.0)
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))))
        return []
    budget = int(args.budget_mib * 2**20)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        x, y, n = make_data(Path(tmp), args.data_mib)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            for mode, limit in (("streamed", budget), ("resident", 2**40)):
                row = {"backend": backend, "mode": mode, "samples": n}
                for what in ("tracemalloc", "rss"):
                    spec = {"x": str(x), "y": str(y), "backend": backend, "budget": limit,
                            "measure": what}  # fmt: skip
                    try:
                        row.update(measure(spec))
                    except subprocess.CalledProcessError as exc:
                        row["error"] = exc.stderr.strip().splitlines()[-1]
                        break
                row["budget"] = budget if mode == "streamed" else None
                rows.append(row)
    _print(rows, args.data_mib, args.budget_mib)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


def _print(rows: list[dict], data_mib: float, budget_mib: float) -> None:
    mib = 2**20
    print(f"fit, 1 epoch, memmap of {data_mib:g} MiB (+ labels), budget {budget_mib:g} MiB")
    print(f"{'backend':8} {'mode':9} {'tracemalloc':>12} {'RssAnon':>10} {'VmHWM':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:8} {r['mode']:9} error: {r['error']}")
            continue
        print(
            f"{r['backend']:8} {r['mode']:9} {r['tracemalloc_peak_bytes'] / mib:9.2f} MiB "
            f"{r['anon_peak_bytes'] / mib:6.2f} MiB {r['hwm_growth_bytes'] / mib:6.2f} MiB"
        )
    print("growth during the fit; tracemalloc: NumPy + Python allocations, RssAnon: sampled")
    print("anonymous RSS, VmHWM: resident high-water mark including the memmap's file pages")


if __name__ == "__main__":
    main()
