"""The ``arrayprop bench`` command: :func:`add_arguments`, :func:`run_from_args`, :func:`main`.

:data:`DESCRIPTION`, the ``--help`` text of ``python -m arrayprop.bench``, says what is timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from arrayprop.bench.configs import (
    ALL_CONFIGS,
    BACKENDS,
    CONFIGS,
    CONV_CONFIGS,
    SWEEP_BATCHES,
    SWEEP_CONFIG,
    get_configs,
    parse_names,
)
from arrayprop.bench.report import format_report, write_json, write_markdown, write_plot
from arrayprop.bench.runner import run_benchmarks

#: What the harness times: the four implementations, timed for every (config, backend).
DESCRIPTION = """\
Benchmark harness: arrayprop train steps vs a GEMM ceiling, PyTorch eager and plain NumPy.

Four implementations are timed for every (config, backend):

  arrayprop    arrayprop.train_step (forward, loss, backward, SGD update) on the backend.
  gemm         The GEMM ceiling: only the matrix products a train step must do. Per Dense
               layer i with input A (batch x n_in), weight W (n_in x n_out) and output
               gradient D (batch x n_out): forward A @ W, weight gradient A.T @ D, and
               input gradient D @ W.T for every layer except the first, whose input is
               the data and needs no gradient. Per Conv2D layer the same three with the
               im2col matrix in the place of A. Same backend namespace and dtype, fresh
               output arrays (as in a real step). efficiency = t_gemm / t_step.
  torch-eager  The PyTorch peer: nn.Sequential of Linear + ReLU (for a CNN: the twin of
               arrayprop's network, Conv2d / MaxPool2d / Linear with the same weights),
               autograd, torch.optim.SGD(lr=0.01), F.cross_entropy / F.mse_loss,
               zero_grad(set_to_none=True); same device and dtype, torch's default threads.
  numpy-ref    arrayprop.bench.reference: a hand-written NumPy matrix-backprop loop,
               float32 throughout (the overhead floor on CPU); MLP configs only.

The method is described in docs/benchmarks.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``arrayprop bench`` options to ``parser``."""
    parser.add_argument(
        "--backends",
        default="numpy",
        help=f"comma-separated arrayprop backends (default: numpy; valid: {', '.join(BACKENDS)})",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated configs (default: the MLPs {', '.join(CONFIGS)}; the CNNs "
        f"{', '.join(CONV_CONFIGS)} by name; valid: {', '.join(ALL_CONFIGS)})",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"also sweep batch sizes {SWEEP_BATCHES[0]}..{SWEEP_BATCHES[-1]} on {SWEEP_CONFIG}",
    )
    parser.add_argument("--repeat", type=int, default=20, help="timed samples (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps (default: 3)")
    parser.add_argument(
        "--max-time",
        type=float,
        default=5.0,
        help="seconds per measurement; fewer samples (>= 3) for heavy "
        "configs (default: 5; 0 = no limit)",
    )
    parser.add_argument(
        "--device", default=None, help="device for the backends and the peer (e.g. cpu, cuda:0)"
    )
    parser.add_argument("--json", metavar="PATH", help="write all raw timings + env as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write a Markdown report")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch-eager peer")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also measure peak memory of one step (fresh subprocesses)",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bf16"),
        default="float32",
        help="bf16: time bfloat16 mixed precision beside float32 on the torch backend against "
        "PyTorch autocast, and measure its digits accuracy (default configs: large,wide; "
        "docs/precision.md)",
    )
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``arrayprop bench``; raises ``ValueError`` for bad names/options."""
    if getattr(args, "precision", "float32") == "bf16":
        return _run_precision(args)
    configs = get_configs(args.configs)  # validate before any work
    backends = parse_names(args.backends, BACKENDS, "backend")
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError("--repeat must be >= 1 and --warmup >= 0")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install 'arrayprop[plot]'")
    doc = run_benchmarks(
        [c.name for c in configs],
        backends,
        device=args.device,
        repeat=args.repeat,
        warmup=args.warmup,
        max_time=args.max_time or None,
        peer=not args.no_peer,
        sweep=args.sweep,
        memory=args.memory,
        seed=getattr(args, "seed", 0),
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(format_report(doc))
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        write_markdown(doc, args.markdown)
        print(f"wrote {args.markdown}")
    if args.plot:
        write_plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _run_precision(args: argparse.Namespace) -> int:
    """``--precision bf16``: :func:`arrayprop.bench.precision.run_precision`."""
    from arrayprop.bench.precision import (
        format_precision_report,
        precision_markdown,
        run_precision,
    )

    names = args.configs if args.configs != ",".join(CONFIGS) else "large,wide"
    configs = get_configs(names)
    if args.backends not in ("numpy", "torch"):
        raise ValueError("--precision bf16 runs on the torch backend; leave --backends out")
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError("--repeat must be >= 1 and --warmup >= 0")
    if args.sweep or args.memory or args.plot or args.no_peer:
        raise ValueError("--precision bf16 takes no --sweep, --memory, --plot or --no-peer")
    if importlib.util.find_spec("torch") is None:
        raise ValueError("--precision bf16 needs PyTorch: pip install 'arrayprop[torch]'")
    doc = run_precision(
        [c.name for c in configs],
        device=args.device,
        repeat=args.repeat,
        warmup=args.warmup,
        max_time=args.max_time or None,
        seed=getattr(args, "seed", 0),
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(format_precision_report(doc))
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(precision_markdown(doc))
        print(f"wrote {args.markdown}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m arrayprop.bench``: run with ``argv``; exit status 2 for bad names/options."""
    parser = argparse.ArgumentParser(
        prog="python -m arrayprop.bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
