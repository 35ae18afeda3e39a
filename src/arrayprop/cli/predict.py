"""``arrayprop predict``: a saved model's class labels, probabilities or outputs for the
samples of a ``.npy`` file, written to another ``.npy`` file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from arrayprop.cli.args import UsageError
from arrayprop.cli.outputs import Output, check_outputs, expand, write_atomic
from arrayprop.cli.stored import StoredModel, add_model_arguments, fit_inputs, load_model
from arrayprop.training.api import predict

__all__ = ["KINDS", "add_parser", "read_input", "run", "transform"]

#: What ``--kind`` writes.
KINDS = ("labels", "probabilities", "outputs")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` sub-command to ``sub`` (the result of ``add_subparsers``)."""
    parser = sub.add_parser(
        "predict",
        help="class labels or probabilities of a saved model for a .npy file",
        description="Run a model saved by 'arrayprop train --save' on the raw samples of a .npy "
        "file, (n, features) or (n, channels, height, width), and write a .npy file: int64 "
        "labels (n,), float probabilities (n, classes) or the raw outputs.",
    )
    add_model_arguments(parser)
    parser.add_argument("--input", metavar="X.npy", required=True, help="the samples, one per row")
    parser.add_argument("--output", metavar="Y.npy", required=True, help="where to write them")
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="labels",
        help="labels (argmax), probabilities (softmax, or sigmoid for a bce model) or the raw "
        "outputs (default: labels)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.set_defaults(run=run)
    return parser


def read_input(path: str) -> np.ndarray:
    """The array of a ``.npy`` file, never unpickled.

    Raises
    ------
    UsageError
        A missing file, a pickled or non-numeric array, an ``.npz`` archive, or a file NumPy
        cannot read.
    """
    where = f"--input {path}"
    p = Path(expand(path))
    if not p.is_file():
        raise UsageError(f"{where}: {'is a directory' if p.is_dir() else 'no such file'}")
    try:
        x = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise UsageError(f"{where}: not a .npy array of numbers ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(x, np.ndarray):
        x.close()
        raise UsageError(f"{where}: an .npz archive; save one array with numpy.save")
    if x.dtype.kind not in "biuf":
        raise UsageError(f"{where}: holds {x.dtype} values; expected numbers")
    return x


def transform(outputs: np.ndarray, kind: str, loss: str | None, model: str) -> np.ndarray:
    """Model outputs (n, ..., classes) -> ``kind``: labels, probabilities or the outputs."""
    if kind == "outputs":
        return outputs
    if kind == "labels":
        return np.argmax(outputs, axis=-1).astype(np.int64)
    if loss == "softmax-ce":
        z = outputs - outputs.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    if loss == "bce":
        return 0.5 * (1.0 + np.tanh(0.5 * outputs))  # the logistic sigmoid, without overflow
    said = f"was trained with {loss}" if loss else "does not say which loss it was trained with"
    raise UsageError(
        f"--kind probabilities: the model {model} {said}, so its outputs are not read as "
        "probabilities; use --kind labels or --kind outputs"
    )


def run(args: argparse.Namespace) -> int:
    """Predict and write ``--output``; returns 0."""
    check_outputs([Output("--output", args.output, args.overwrite, ("npy",))])
    stored: StoredModel = load_model(args)
    if args.kind == "probabilities":
        transform(np.zeros((1, 2)), args.kind, stored.loss, args.model)  # refused now, if at all
    x = fit_inputs(read_input(args.input), stored, f"--input {args.input}")
    model = stored.model
    out = np.asarray(model.backend.to_host(predict(model, x, batch_size=args.batch_size)))
    result = transform(out, args.kind, stored.loss, args.model)
    write_atomic(args.output, lambda f: np.save(f, result, allow_pickle=False))
    print(f"wrote {args.output}: {args.kind} of shape {result.shape}, {result.dtype}")
    return 0
