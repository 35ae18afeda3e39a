"""The ``arrayprop`` command: ``train``, ``info``, ``gradcheck`` and ``bench``.

One module per command (:mod:`.train`, :mod:`.info`, :mod:`.gradcheck`, :mod:`.bench`), each
adding its sub-parser; :mod:`.args` holds the argument types and :mod:`.datasets` the data sets
``train`` knows. Bad arguments end with a one-line message on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from arrayprop.cli import bench, gradcheck, info, train
from arrayprop.cli.args import DATASETS, DTYPES, UsageError
from arrayprop.cli.datasets import Dataset, load_dataset
from arrayprop.cli.gradcheck import GRADCHECK_TOLERANCE, gradcheck_cases, run_gradchecks
from arrayprop.cli.info import blas_report
from arrayprop.cli.train import (
    DEFAULT_ADAMW_DECAY,
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_HIDDEN,
    DEFAULT_LR,
    DEFAULT_OPTIMIZER,
    VALIDATION_FRACTION,
    build_optimizer,
    model_sizes,
    plot_history,
)
from arrayprop.errors import ArrayPropError
from arrayprop.version import __version__

__all__ = [
    "DATASETS",
    "DEFAULT_ADAMW_DECAY",
    "DEFAULT_BATCH",
    "DEFAULT_EPOCHS",
    "DEFAULT_HIDDEN",
    "DEFAULT_LR",
    "DEFAULT_OPTIMIZER",
    "DTYPES",
    "GRADCHECK_TOLERANCE",
    "VALIDATION_FRACTION",
    "Dataset",
    "UsageError",
    "blas_report",
    "build_optimizer",
    "build_parser",
    "gradcheck_cases",
    "load_dataset",
    "main",
    "model_sizes",
    "plot_history",
    "run_gradchecks",
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())


def build_parser() -> argparse.ArgumentParser:
    """The ``arrayprop`` argument parser (sub-commands train, info, gradcheck, bench).

    Each sub-command sets ``run``, the function :func:`main` calls with the parsed arguments.
    """
    parser = Parser(
        prog="arrayprop",
        description="Matrix-form backpropagation on NumPy, CuPy, PyTorch, JAX, array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"arrayprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,info,gradcheck,bench}")
    for command in (train, info, gradcheck, bench):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``arrayprop`` command line; returns the exit status.

    User errors (bad options, unknown names, a missing backend or file) raise ``SystemExit(2)``
    after one line on stderr; real bugs still show their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: train, info, gradcheck or bench")
    prog = f"arrayprop {args.command}"
    try:
        return int(args.run(args) or 0)
    except (ArrayPropError, ValueError, UsageError) as exc:
        parser.exit(2, f"{prog}: error: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted\n")
