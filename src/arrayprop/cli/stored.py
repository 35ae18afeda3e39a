"""A model saved by ``arrayprop train --save``, loaded for ``evaluate`` and ``predict``
(:func:`load_model`), and the inputs it reads (:func:`fit_inputs`).

The model takes raw inputs: ``train`` puts a :class:`~arrayprop.Standardize` first. A file saved
before it did holds the statistics only in its ``extra`` (``input_mean``, ``input_scale``); the
loaded model then gets that layer in front, so both read raw inputs alike.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arrayprop import checkpoint
from arrayprop.backends import BACKENDS
from arrayprop.cli.args import DTYPES, UsageError, positive_int
from arrayprop.cli.outputs import expand
from arrayprop.cli.train import open_backend
from arrayprop.nn.containers import Sequential
from arrayprop.nn.standardize import Standardize

__all__ = ["StoredModel", "add_model_arguments", "fit_inputs", "load_model"]


@dataclass
class StoredModel:
    """A loaded model and what its checkpoint says about its inputs and training.

    Attributes
    ----------
    model : Layer
        Reads raw inputs of ``input_shape`` (per sample).
    input_shape : tuple of int or None
        One sample's shape, when known (from the checkpoint or the model's input width).
    loss : str or None
        The ``--loss`` it was trained with (None for a checkpoint that does not say).
    extra : dict
        The checkpoint's ``extra``.
    """

    model: Any
    input_shape: tuple[int, ...] | None
    loss: str | None
    extra: dict[str, Any]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model FILE`` and where to run it: ``--backend``, ``--device``, ``--dtype``,
    ``--batch-size``."""
    parser.add_argument(
        "--model", metavar="FILE", required=True, help="a model saved by arrayprop train --save"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="array library (default: $ARRAYPROP_BACKEND, else numpy)",
    )
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None, help="model dtype (default: the saved one)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="samples per forward pass (default: 256)",
    )


def load_model(args: argparse.Namespace) -> StoredModel:
    """The model of ``args.model`` on ``args.backend`` / ``--device`` / ``--dtype``.

    Raises
    ------
    UsageError
        A missing file, or a device the backend cannot use.
    CheckpointError
        A file that is not a sound arrayprop checkpoint.
    """
    path = Path(expand(args.model))
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise UsageError(f"--model {args.model}: {what}")
    be = open_backend(args.backend, args.device, args.dtype or "float32")
    loaded = checkpoint.load(path, backend=be.name, device=args.device, dtype=args.dtype)
    model, extra = loaded.model, loaded.extra
    shape = extra.get("input_shape")
    input_shape = tuple(int(n) for n in shape) if isinstance(shape, list) else None
    first = model[0] if isinstance(model, Sequential) and len(model) else None
    if not isinstance(first, Standardize) and "input_mean" in extra:
        # Saved before train put the preprocessing inside the model: put it there now.
        mean = np.asarray(extra["input_mean"])
        input_shape = input_shape or tuple(mean.shape)
        if mean.size != math.prod(input_shape):
            raise UsageError(
                f"--model {args.model}: input_mean has {mean.size} values for inputs of shape "
                f"{input_shape}"
            )
        layer = Standardize(
            input_shape,
            mean.reshape(input_shape),
            float(extra.get("input_scale", 1.0)),
            backend=model.backend,
        )
        model = Sequential(layer, *model)
    if input_shape is None and getattr(model, "in_features", None) is not None:
        input_shape = (int(model.in_features),)
    loss = extra.get("loss")
    return StoredModel(model, input_shape, loss if isinstance(loss, str) else None, extra)


def fit_inputs(x: np.ndarray, stored: StoredModel, what: str) -> np.ndarray:
    """``x`` as the model reads it: (n, *input_shape). Samples of as many values in another
    layout (flat rows of images, images for a model of flat rows) are reshaped.

    Raises
    ------
    UsageError
        When ``x`` is not n samples of the model's input shape (flat or not).
    """
    shape = stored.input_shape
    if shape is None:
        return x
    if x.ndim >= 2 and tuple(x.shape[1:]) == shape:
        return x
    if x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(shape):
        return x.reshape(-1, *shape)  # the same values per sample, in row-major order
    flat = f" or (n, {math.prod(shape)})" if len(shape) > 1 else ""
    raise UsageError(
        f"{what} has shape {tuple(x.shape)}; the model reads (n, {', '.join(map(str, shape))})"
        f"{flat}"
    )
