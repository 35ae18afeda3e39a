"""Does one BLAS thread help small models? One run, the figures of docs/training.md.

    PYTHONPATH=src python benchmarks/blas_threads.py [--epochs 10] [--runs 3]

Times ``fit`` of the default digits model (64-256-10, batch 32, AdamW) with NumPy's BLAS
left as it is (``blas_threads=None``) and limited to one thread (``blas_threads=1``),
alternating, then single float32 products of several sizes with 1 and 2 threads. Prints the
1-minute load average before, between and after: on a shared machine it decides the result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import arrayprop as ap
from arrayprop.data import load_digits

SHAPES = [
    (32, 64, 256),
    (128, 128, 128),
    (64, 256, 256),
    (128, 256, 256),
    (256, 256, 256),
    (128, 512, 512),
    (256, 784, 512),
    (512, 1024, 1024),
]


def time_fit(epochs: int, runs: int) -> dict:
    (x, y), _ = load_digits(seed=0)
    x = (x - x.mean(0)) / (x - x.mean(0)).std()
    times: dict = {None: [], 1: []}
    for _ in range(runs):
        for threads in times:
            model = ap.mlp([64, 256, 10], seed=0)
            opt = ap.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
            t0 = time.perf_counter()
            ap.fit(
                model,
                x,
                y,
                loss="softmax-ce",
                optimizer=opt,
                epochs=epochs,
                batch_size=32,
                progress=None,
                blas_threads=threads,
            )
            times[threads].append(time.perf_counter() - t0)
    return times


def time_gemm(b: int, k: int, n: int, threads: int, samples: int = 30) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((b, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    reps = max(1, int(2e7 / (b * k * n)))
    with threadpool_limits(threads, user_api="blas"):
        ts = []
        for _ in range(samples):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ w
            ts.append((time.perf_counter() - t0) / reps)
    return statistics.median(ts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("load average at the start", os.getloadavg())
    fits = time_fit(args.epochs, args.runs)
    print(f"fit 64-256-10, batch 32, {args.epochs} epochs on 1,438 digits, seconds:")
    for threads, ts in fits.items():
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"  blas_threads={threads}: median {statistics.median(ts):.2f}  (runs {runs})")
    print("load average after the fits", os.getloadavg())
    print("GEMM (b,k)@(k,n) float32, median of 30 samples in us; ratio = t(2 threads)/t(1)")
    for b, k, n in SHAPES:
        one, two = (1e6 * time_gemm(b, k, n, t) for t in (1, 2))
        print(
            f"  {b}x{k}x{n} = {b * k * n:>11,}: 1 thread {one:9.1f}  2 threads {two:9.1f}"
            f"  ratio {two / one:.2f}"
        )
    print("load average at the end", os.getloadavg())


if __name__ == "__main__":
    main()
