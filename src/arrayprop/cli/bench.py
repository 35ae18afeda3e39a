"""``arrayprop bench``: the sub-command's arguments and run come from :mod:`arrayprop.bench`."""

from __future__ import annotations

import argparse
from typing import Any

from arrayprop import bench

__all__ = ["add_parser"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to ``sub`` (the result of ``add_subparsers``)."""
    parser = sub.add_parser(
        "bench",
        help="train-step throughput per backend, with GEMM ceiling and PyTorch peer",
        description="Time training steps per backend and configuration (see docs/benchmarks.md).",
    )
    bench.add_arguments(parser)
    parser.set_defaults(run=bench.run_from_args)
    return parser
