"""Timing of workloads: warm-up, calibrated samples of synchronised steps, medians.

:func:`time_workloads` interleaves several workloads in rounds and returns one
:class:`Measurement` (raw per-step times plus median, IQR, throughput, the load average when it
ended, and whether it is :attr:`~Measurement.noisy`) each.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from arrayprop.bench.workloads import Workload

#: A measurement whose interquartile range exceeds this fraction of its median is flagged as
#: noisy (in the tables, the JSON and as error bars in the chart): compare it with care.
NOISY_IQR = 0.25


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, rounded (None where the OS has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


@dataclasses.dataclass
class Measurement:
    """Raw timings of one workload: ``times_s[i]`` is seconds per step of sample ``i``."""

    config: str
    impl: str
    backend: str
    device: str
    batch: int
    times_s: list[float]
    steps_per_sample: int
    warmup_steps: int
    flops_per_step: int | None = None
    sweep: bool = False
    info: dict = dataclasses.field(default_factory=dict)
    #: The load averages right after the last sample (what else ran on the machine).
    loadavg: list[float] | None = None

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    @property
    def min_s(self) -> float:
        return float(np.min(self.times_s))

    @property
    def q1_s(self) -> float:
        return float(np.percentile(self.times_s, 25))

    @property
    def q3_s(self) -> float:
        return float(np.percentile(self.times_s, 75))

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def rel_iqr(self) -> float:
        """The IQR as a fraction of the median."""
        return self.iqr_s / self.median_s if self.median_s > 0 else math.inf

    @property
    def noisy(self) -> bool:
        """True when the IQR exceeds :data:`NOISY_IQR` of the median."""
        return self.rel_iqr > NOISY_IQR

    @property
    def ms_per_step(self) -> float:
        return 1e3 * self.median_s

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def gflops(self) -> float | None:
        return None if self.flops_per_step is None else self.flops_per_step / self.median_s / 1e9

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(
            repeat=len(self.times_s),
            median_s=self.median_s,
            min_s=self.min_s,
            q1_s=self.q1_s,
            q3_s=self.q3_s,
            iqr_s=self.iqr_s,
            rel_iqr=self.rel_iqr,
            noisy=self.noisy,
            ms_per_step=self.ms_per_step,
            samples_per_s=self.samples_per_s,
            gflops=self.gflops,
        )
        return d


def time_workload(wl: Workload, **kwargs) -> Measurement:
    """Time one workload; see :func:`time_workloads` for the method and options."""
    return time_workloads([wl], **kwargs)[0]


def time_workloads(
    wls: Sequence[Workload],
    *,
    warmup: int = 3,
    repeat: int = 20,
    min_sample_time: float = 0.05,
    max_time: float | None = None,
    min_repeat: int = 3,
    rounds: int = 10,
    settle_time: float = 0.2,
    sweep: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Measurement]:
    """Time workloads in interleaved rounds; return one :class:`Measurement` each.

    Per workload: ``warmup`` steps, then calibration steps until ``min_sample_time``
    seconds have passed (twice, unless one step is that slow; the faster estimate sets
    the number ``n`` of steps per sample so that a sample lasts at least
    ``min_sample_time``).

    Then ``repeat`` samples per workload, split over ``rounds`` rounds; in each round
    every workload runs its share of samples back to back, so load drifts of a shared
    machine hit all workloads alike. Before a workload's turn the harness runs one
    untimed step (skipped for steps slower than ``settle_time``) and, when the previous
    turn used another library's thread pool (:attr:`Workload.pool`: NumPy's OpenBLAS,
    torch's OpenMP, ...), first sleeps ``settle_time`` seconds so that the idle worker
    threads of that library stop spinning: on a small machine they otherwise steal
    cores from the next one. Callers should order ``wls`` by pool (as
    :func:`run_benchmarks` does) to keep these switches few.

    A sample reads the clock, runs ``n`` steps, synchronises the device (``wl.sync``
    on the last step's result) and reads the clock again; the steps inside a sample are
    not synchronised beyond what the implementation does itself. ``max_time``
    (seconds per workload) lowers ``repeat``, never below ``min_repeat``.
    """
    gc.collect()
    interleaved = len(wls) > 1
    last_pool = [wls[0].pool if wls else None]

    def settle(wl, est):
        if not interleaved:
            return
        if wl.pool != last_pool[0]:
            time.sleep(settle_time)
            last_pool[0] = wl.pool
        if est <= settle_time:
            wl.sync(wl.step())

    plans = []
    for wl in wls:
        settle(wl, 0.0)
        out = None
        for _ in range(max(0, warmup)):
            out = wl.step()
        wl.sync(out)
        ests, n_cal_total = [], 0
        while len(ests) < 2:
            n_cal, t0 = 0, clock()
            while True:
                out = wl.step()
                n_cal += 1
                wl.sync(out)
                elapsed = clock() - t0
                if elapsed >= min_sample_time or n_cal >= 100_000:
                    break
            ests.append(elapsed / n_cal)
            n_cal_total += n_cal
            if n_cal == 1:  # one step already fills a sample: no second estimate needed
                break
        del out
        est = min(ests)
        n = max(1, math.ceil(min_sample_time / est)) if est > 0 else 1
        plans.append((wl, n, est, warmup + n_cal_total))
    reps = max(1, repeat)
    if max_time is not None:
        per_round = sum(n * est for _, n, est, _ in plans)
        if per_round > 0:
            reps = min(reps, max(min_repeat, int(max_time * len(plans) / per_round)))
    n_rounds = max(1, min(rounds, reps)) if interleaved else 1
    shares = [reps // n_rounds + (i < reps % n_rounds) for i in range(n_rounds)]
    times: list[list[float]] = [[] for _ in plans]
    loads: list[list[float] | None] = [None for _ in plans]
    for share in shares:
        for i, ((wl, n, est, _), ts) in enumerate(zip(plans, times, strict=True)):
            settle(wl, est)
            for _ in range(share):
                t0 = clock()
                for _ in range(n):
                    out = wl.step()
                wl.sync(out)
                ts.append((clock() - t0) / n)
                del out
            loads[i] = loadavg()
    return [
        Measurement(
            config=wl.config.name,
            impl=wl.impl,
            backend=wl.backend,
            device=wl.device,
            batch=wl.batch,
            times_s=ts,
            steps_per_sample=n,
            warmup_steps=nw,
            flops_per_step=wl.flops_per_step,
            sweep=sweep,
            info=dict(wl.info),
            loadavg=load,
        )
        for (wl, n, _, nw), ts, load in zip(plans, times, loads, strict=True)
    ]
