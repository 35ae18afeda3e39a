"""The ``arrayprop`` command: ``train``, ``evaluate``, ``predict``, ``info``, ``gradcheck``
and ``bench``.

One module per command (:mod:`.train`, :mod:`.evaluate`, :mod:`.predict`, :mod:`.info`,
:mod:`.gradcheck`, :mod:`.bench`), each adding its sub-parser; :mod:`.args` holds the argument
types, :mod:`.datasets` the data sets ``train`` knows, :mod:`.outputs` the checks of the files a
command writes and :mod:`.stored` the loading of a saved model. Exit statuses
(:data:`EXIT_STATUS`): 0 done, 1 the run failed (training diverged, a gradient check failed, a
file could not be written), 2 a bad command line (found before any training; one line on stderr,
never a traceback), 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from arrayprop.cli import bench, evaluate, gradcheck, info, predict, train
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
    INTERRUPTED,
    VALIDATION_FRACTION,
    build_optimizer,
    model_sizes,
    plot_history,
    with_standardize,
)
from arrayprop.errors import ArrayPropError, DivergenceError
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
    "EXIT_STATUS",
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
    "with_standardize",
]


#: What each exit status of the ``arrayprop`` command means (docs/training.md has the table).
EXIT_STATUS = {
    0: "success",
    1: "the run failed: training diverged, a gradient check failed, or a file could not be written",
    2: "a bad command line, found before any training: one line on stderr",
    INTERRUPTED: "interrupted by Ctrl-C (files written, as far as training got)",
}
COMMANDS = "train, evaluate, predict, info, gradcheck or bench"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())


def build_parser() -> argparse.ArgumentParser:
    """The ``arrayprop`` argument parser (sub-commands train, evaluate, predict, info,
    gradcheck, bench).

    Each sub-command sets ``run``, the function :func:`main` calls with the parsed arguments.
    """
    parser = Parser(
        prog="arrayprop",
        description="Matrix-form backpropagation on NumPy, CuPy, PyTorch, JAX, array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"arrayprop {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{train,evaluate,predict,info,gradcheck,bench}"
    )
    for command in (train, evaluate, predict, info, gradcheck, bench):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``arrayprop`` command line; returns the exit status (:data:`EXIT_STATUS`).

    User errors (bad options, unknown names, a missing backend or file, an output that exists or
    cannot be written) raise ``SystemExit(2)`` after one line on stderr, before any training; a
    diverged run or a failed write ``SystemExit(1)``, Ctrl-C ``SystemExit(130)``, each after one
    line. Real bugs still show their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {COMMANDS}")
    prog = f"arrayprop {args.command}"
    try:
        return int(args.run(args) or 0)
    except DivergenceError as exc:
        parser.exit(1, f"{prog}: error: {_one_line(exc)}\n")
    except (ArrayPropError, ValueError, UsageError) as exc:
        parser.exit(2, f"{prog}: error: {_one_line(exc)}\n")
    except OSError as exc:  # after the checks: a full disk, a file removed under us
        parser.exit(1, f"{prog}: error: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(INTERRUPTED, f"{prog}: interrupted\n")
