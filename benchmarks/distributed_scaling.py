"""Throughput and scaling efficiency of ``fit(..., distributed=True)`` on 1 and 2 MPI ranks.

    python benchmarks/distributed_scaling.py [--configs medium,large] [--steps 24] [--repeats 3]

For each bench config (src/arrayprop/bench/configs.py: float32, SGD, its batch size as the
global batch) the driver times one epoch of ``--steps`` global batches, ``--repeats`` times, in
fresh processes:

- ``1 rank``: plain ``fit`` (no MPI), BLAS on 1 thread;
- ``1 rank, distributed``: ``fit(distributed=True)`` under ``mpirun -n 1`` (the cost of the
  flat-buffer all-reduce path alone);
- ``2 ranks``: ``mpirun -n 2``, BLAS on 1 thread per rank, so the ranks do not oversubscribe;
- ``1 rank, 2 threads``: plain ``fit`` with BLAS on 2 threads (what the two cores give without
  MPI).

Scaling efficiency = throughput(2 ranks) / (2 x throughput(1 rank)). It prints a Markdown table
with the median samples/s and the load average before and after (docs/distributed.md). NumPy
backend; rank 0's wall time per epoch, measured between two barriers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(config: str, steps: int, repeats: int, distributed: bool) -> None:
    import numpy as np

    import arrayprop as ap
    from arrayprop.bench.configs import CONFIGS, DTYPE, LR

    cfg = CONFIGS[config]
    n = cfg.batch * steps
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, cfg.sizes[0])).astype(np.float32)
    y = rng.integers(0, cfg.sizes[-1], size=n)
    model = ap.mlp(cfg.sizes, activation=cfg.activation, seed=0, backend="numpy", dtype=DTYPE)
    opt = ap.SGD(model.parameters(), lr=LR)
    world = ap.distributed.init() if distributed else None
    kwargs = dict(loss=cfg.loss, optimizer=opt, batch_size=cfg.batch, progress=None, metrics=[])
    # warm-up: one short epoch (allocations, BLAS threads, MPI connections)
    ap.fit(
        model, x[: 2 * cfg.batch], y[: 2 * cfg.batch], epochs=1, distributed=distributed, **kwargs
    )
    times = []
    for _ in range(repeats):
        if world is not None:
            world.barrier()
        t0 = time.perf_counter()
        ap.fit(model, x, y, epochs=1, distributed=distributed, **kwargs)
        if world is not None:
            world.barrier()
        times.append(time.perf_counter() - t0)
    if world is None or world.leader:
        median = statistics.median(times)
        print(json.dumps({"config": config, "samples": n, "seconds": times, "median": median}))


def launch(config: str, args: argparse.Namespace, ranks: int, threads: int) -> dict:
    env = dict(os.environ)
    threads_env = {
        k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    env.update(
        threads_env, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, __file__, "--worker", "--configs", config]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    if ranks:
        mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or "mpirun"
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        # one core per rank: bind none, and let waiting ranks yield rather than spin
        env.update(OMPI_MCA_mpi_yield_when_idle="1")
        cmd = [mpirun, "-n", str(ranks), "--bind-to", "none", *cmd, "--distributed"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="medium,large")
    parser.add_argument("--steps", type=int, default=24, help="global batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configs = args.configs.split(",")
    if args.worker:
        worker(configs[0], args.steps, args.repeats, args.distributed)
        return
    load_before = os.getloadavg()
    rows = []
    for config in configs:
        runs = {
            "1 rank": launch(config, args, 0, 1),
            "1 rank, distributed": launch(config, args, 1, 1),
            "2 ranks": launch(config, args, 2, 1),
            "1 rank, 2 threads": launch(config, args, 0, 2),
        }
        base = runs["1 rank"]["samples"] / runs["1 rank"]["median"]
        for name, r in runs.items():
            rate = r["samples"] / r["median"]
            ranks = 2 if name == "2 ranks" else 1
            eff = rate / (ranks * base)
            rows.append(f"| {config} | {name} | {rate:,.0f} | {rate / base:.2f} | {eff:.2f} |")
    load_after = os.getloadavg()
    print(f"steps per epoch {args.steps}, repeats {args.repeats} (medians), numpy float32")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")  # fmt: skip
    print("| config | run | samples/s | speed-up | efficiency |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
