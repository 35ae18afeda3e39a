"""One full float32 train step per (config, implementation, backend), via pytest-benchmark.

Grouped by config, so ``pytest benchmarks/ --benchmark-only`` prints the arrayprop step,
the GEMM ceiling, the PyTorch-eager peer and the NumPy reference loop of each config
side by side; ``--benchmark-save=NAME`` / ``pytest-benchmark compare`` compare runs.

Every timed call is one step followed by the device sync (a no-op on CPU). The
``arrayprop bench`` CLI uses the same workloads but its own timing loop (interleaved
rounds, several steps per synchronised sample); see docs/benchmarks.md.
"""

from __future__ import annotations

import pytest

from arrayprop import bench

WARMUP_STEPS = 3


def test_train_step(benchmark, bench_case, bench_device):
    config, impl, backend = bench_case
    try:
        wl = bench.make_workload(impl, config, backend, bench_device)
    except (ValueError, ImportError) as exc:  # backend/device not usable here
        pytest.skip(str(exc))
    benchmark.group = config
    benchmark.extra_info.update(
        impl=impl,
        backend=wl.backend,
        device=wl.device,
        batch=wl.batch,
        model=wl.config.describe(),
        loss=wl.config.loss,
        flops_per_step=wl.flops_per_step,
    )
    step, sync = wl.step, wl.sync

    def one_step():
        sync(step())

    for _ in range(WARMUP_STEPS):
        one_step()
    benchmark(one_step)
