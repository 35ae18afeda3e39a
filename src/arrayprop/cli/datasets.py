"""The data sets ``arrayprop train`` knows (:func:`load_dataset`), with the statistics of their
preprocessing (applied by a :class:`~arrayprop.Standardize` layer inside the model)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from arrayprop import data
from arrayprop.cli.args import UsageError

__all__ = ["Dataset", "load_dataset"]


@dataclass
class Dataset:
    """A train/test split on the host, raw inputs and the statistics to standardise them.

    ``x_*`` are raw float32 arrays of shape (n, features), ``y_*`` integer labels of shape
    (n,); ``mean`` (features,) and ``scale`` are the training set's statistics: the model reads
    ``(x - mean) / scale`` (:meth:`standardized` applies it on the host).
    ``image_shape`` is (channels, height, width) of one flat row when the inputs are images
    (``x.reshape(n, *image_shape)`` for a conv model), else None.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    mean: np.ndarray
    scale: float
    image_shape: tuple[int, int, int] | None = None

    def standardized(self) -> Dataset:
        """A copy whose inputs are ``(x - mean) / scale``, in float32 (what the model's
        :class:`~arrayprop.Standardize` computes, here on the host)."""

        def pre(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else ((x - self.mean) / self.scale).astype(np.float32)

        return dataclasses.replace(self, x_train=pre(self.x_train), x_test=pre(self.x_test))


def load_dataset(spec: str) -> Dataset:
    """Load ``digits``, ``spirals``, ``xor`` or ``mnist:DIR`` (``~`` expanded) and the
    statistics of its preprocessing.

    Every input is to be centred by the training mean of its feature and divided by one overall
    training standard deviation. (Per-feature scaling would blow up the near-constant border
    pixels of the digits into noise: it costs about 1 % test accuracy there.)
    """
    if spec == "digits":
        (x_tr, y_tr), (x_te, y_te) = data.load_digits(seed=0)
    elif spec.startswith("mnist:"):
        directory = os.path.expanduser(spec[len("mnist:") :])
        try:
            x_tr, y_tr = data.load_mnist(directory, "train")
            x_te, y_te = data.load_mnist(directory, "test")
        except FileNotFoundError as exc:
            raise UsageError(f"--dataset {spec}: {exc}") from exc
    else:
        x, y = data.make_spirals(n=600, seed=0) if spec == "spirals" else data.make_xor(400)
        (x_tr, y_tr), (x_te, y_te) = data.train_val_split(x, y, 0.25, seed=0, stratify=True)
    image_shape = None
    if spec == "digits" or spec.startswith("mnist:"):
        # Square grey-scale images stored as rows: 8x8 digits, 28x28 MNIST.
        side = math.isqrt(x_tr.shape[1])
        image_shape = (1, side, side) if side * side == x_tr.shape[1] else None
    mean = x_tr.mean(axis=0)
    scale = float((x_tr - mean).std()) or 1.0
    return Dataset(
        name=spec.split(":")[0],
        x_train=x_tr.astype(np.float32),
        y_train=y_tr,
        x_test=x_te.astype(np.float32),
        y_test=y_te,
        classes=int(max(y_tr.max(), y_te.max())) + 1,
        mean=mean.astype(np.float32),
        scale=scale,
        image_shape=image_shape,
    )
