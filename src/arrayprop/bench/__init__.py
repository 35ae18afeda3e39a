"""Benchmark harness: arrayprop train steps vs a GEMM ceiling, PyTorch eager and plain NumPy.

Shared by ``arrayprop bench`` (through :func:`add_arguments` / :func:`run_from_args`) and
the pytest-benchmark suite in ``benchmarks/``. The four implementations timed for every
(config, backend) are ``arrayprop``, ``gemm``, ``torch-eager`` and ``numpy-ref``:
:data:`arrayprop.bench.cli.DESCRIPTION` (the ``--help`` of ``python -m arrayprop.bench``)
says what each one runs, and ``docs/benchmarks.md`` describes the method.

This package imports numpy eagerly and torch / cupy / jax / matplotlib lazily.
"""

# Where things live: configs (BenchConfig, CONFIGS, ConvBenchConfig, CONV_CONFIGS, sweep, GEMM
# shapes), workloads (the four implementations as ready-to-time steps, the CNN models and
# their PyTorch twins), timing (warm-up, samples, medians), memory (peak
# memory, measured by memory_child in a fresh interpreter), environment (machine and
# libraries), runner (the whole suite and its ratios), report (tables, Markdown, JSON, PNG),
# cli (``arrayprop bench``). memory_child is not imported here: ``python -m`` runs it.

from __future__ import annotations

from arrayprop.bench.cli import add_arguments, run_from_args
from arrayprop.bench.configs import (
    ALL_CONFIGS,
    BACKENDS,
    CONFIGS,
    CONV_CONFIGS,
    IMPLS,
    LR,
    SWEEP_BATCHES,
    BenchConfig,
    ConvBenchConfig,
    gemm_flops,
    gemm_shapes,
    make_data,
)
from arrayprop.bench.environment import environment
from arrayprop.bench.memory import measure_memory
from arrayprop.bench.report import write_json, write_markdown, write_plot
from arrayprop.bench.runner import run_benchmarks
from arrayprop.bench.timing import Measurement, time_workload, time_workloads
from arrayprop.bench.workloads import (
    Workload,
    build_model,
    load_reference,
    make_workload,
    torch_twin,
)

# isort: split
# Not in __all__ but importable from here as when this package was one module (tests and
# benchmarks/conftest.py use them).
from arrayprop.bench.cli import main as main
from arrayprop.bench.configs import DTYPE as DTYPE
from arrayprop.bench.configs import SWEEP_CONFIG as SWEEP_CONFIG
from arrayprop.bench.configs import get_configs as get_configs
from arrayprop.bench.configs import parse_names as parse_names
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
from arrayprop.bench.workloads import arrayprop_backend as arrayprop_backend
from arrayprop.bench.workloads import gemm_workload as gemm_workload
from arrayprop.bench.workloads import thread_pool as thread_pool
from arrayprop.bench.workloads import torch_device_for as torch_device_for
from arrayprop.bench.workloads import torch_peer as torch_peer

__all__ = [
    "ALL_CONFIGS",
    "BACKENDS",
    "CONFIGS",
    "CONV_CONFIGS",
    "IMPLS",
    "LR",
    "SWEEP_BATCHES",
    "BenchConfig",
    "ConvBenchConfig",
    "Measurement",
    "Workload",
    "add_arguments",
    "build_model",
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
    "torch_twin",
    "write_json",
    "write_markdown",
    "write_plot",
]
