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

This package imports numpy eagerly and torch / cupy / jax / matplotlib lazily.
"""

# Where things live: configs (BenchConfig, CONFIGS, sweep, GEMM shapes), workloads (the four
# implementations as ready-to-time steps), timing (warm-up, samples, medians), memory (peak
# memory in a subprocess), environment (machine and libraries), runner (the whole suite and
# its ratios), report (tables, Markdown, JSON, PNG), cli (``arrayprop bench``).

from __future__ import annotations

from arrayprop.bench.cli import add_arguments, run_from_args
from arrayprop.bench.configs import (
    BACKENDS,
    CONFIGS,
    IMPLS,
    LR,
    SWEEP_BATCHES,
    BenchConfig,
    gemm_flops,
    gemm_shapes,
    make_data,
)
from arrayprop.bench.environment import environment
from arrayprop.bench.memory import measure_memory
from arrayprop.bench.report import write_json, write_markdown, write_plot
from arrayprop.bench.runner import run_benchmarks
from arrayprop.bench.timing import Measurement, time_workload, time_workloads
from arrayprop.bench.workloads import Workload, load_reference, make_workload

# isort: split
# Not in __all__ but importable from here as when this package was one module: tests,
# benchmarks/conftest.py and the memory child (`from arrayprop.bench import _memory_child`).
from arrayprop.bench.cli import main as main
from arrayprop.bench.configs import DTYPE as DTYPE
from arrayprop.bench.configs import SWEEP_CONFIG as SWEEP_CONFIG
from arrayprop.bench.configs import _parse_names as _parse_names
from arrayprop.bench.configs import get_configs as get_configs
from arrayprop.bench.memory import _memory_child as _memory_child
from arrayprop.bench.report import DETAIL_HEADER as DETAIL_HEADER
from arrayprop.bench.report import MEMORY_HEADER as MEMORY_HEADER
from arrayprop.bench.report import SUMMARY_HEADER as SUMMARY_HEADER
from arrayprop.bench.report import detail_rows as detail_rows
from arrayprop.bench.report import format_report as format_report
from arrayprop.bench.report import format_table as format_table
from arrayprop.bench.report import markdown_table as markdown_table
from arrayprop.bench.report import memory_rows as memory_rows
from arrayprop.bench.report import summary_rows as summary_rows
from arrayprop.bench.report import to_markdown as to_markdown
from arrayprop.bench.runner import SCHEMA as SCHEMA
from arrayprop.bench.runner import summarize as summarize
from arrayprop.bench.workloads import _arrayprop_backend as _arrayprop_backend
from arrayprop.bench.workloads import _gemm_workload as _gemm_workload
from arrayprop.bench.workloads import torch_device_for as torch_device_for
from arrayprop.bench.workloads import torch_peer as torch_peer

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
