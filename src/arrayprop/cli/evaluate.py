"""``arrayprop evaluate``: the loss and accuracy of a saved model on a data set's split."""

from __future__ import annotations

import argparse
from typing import Any

from arrayprop.cli.args import UsageError, dataset_spec
from arrayprop.cli.datasets import load_dataset
from arrayprop.cli.stored import add_model_arguments, fit_inputs, load_model
from arrayprop.cli.train import loss_and_targets
from arrayprop.training.api import evaluate

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to ``sub`` (the result of ``add_subparsers``)."""
    parser = sub.add_parser(
        "evaluate",
        help="loss and accuracy of a saved model on a data set",
        description="Score a model saved by 'arrayprop train --save' on a data set's test (or "
        "training) split. The model reads raw inputs: its preprocessing is inside it.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--dataset",
        type=dataset_spec,
        default=None,
        metavar="{digits,spirals,xor,mnist:DIR}",
        help="the data set (default: the one the model was trained on)",
    )
    parser.add_argument(
        "--split", choices=["test", "train"], default="test", help="which split (default: test)"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print ``<split> loss L  <split> accuracy A%  (n samples of <dataset>)``; returns 0."""
    stored = load_model(args)
    spec = args.dataset or stored.extra.get("dataset")
    if not isinstance(spec, str):
        raise UsageError(f"--model {args.model} does not say its data set: give --dataset")
    spec = dataset_spec(spec) if args.dataset is None else spec
    ds = load_dataset(spec)
    classes = getattr(stored.model, "out_features", None)
    if classes is not None and classes != ds.classes:
        raise UsageError(
            f"--dataset {spec} has {ds.classes} classes; the model gives {classes} outputs"
        )
    loss, y_train, y_test = loss_and_targets(stored.loss or "softmax-ce", ds)
    x, y = (ds.x_test, y_test) if args.split == "test" else (ds.x_train, y_train)
    x = fit_inputs(x, stored, f"--dataset {spec}: its inputs")
    result = evaluate(
        stored.model,
        x,
        y,
        loss=loss if stored.loss else None,
        metrics=("accuracy",),
        batch_size=args.batch_size,
    )
    parts = [f"{args.split} loss {result['loss']:.4f}"] if "loss" in result else []
    parts.append(f"{args.split} accuracy {100 * result['accuracy']:.2f}%")
    print("  ".join(parts) + f"  ({len(x)} samples of {ds.name})")
    return 0
