"""Metrics computed on the device: accuracy, mean squared error, mean absolute error.

A :class:`Metric` gives the *sum over the samples of a batch* of its per-sample value, as a 0-d
array on the backend (:meth:`Metric.batch_sum`). :func:`~arrayprop.fit` and
:func:`~arrayprop.evaluate` add these sums up on the device and divide by the number of samples
once, when they read the totals back to the host; nothing here forces a device→host copy.
Array API standard only.

Targets take the forms the losses take:

- class scores ``pred`` (batch, classes) with integer labels (batch,) or one-hot / probability
  rows (batch, classes): the prediction is the arg-max class;
- a single output ``pred`` (batch, 1) or (batch,) with 0/1 targets: the prediction is
  ``pred > threshold`` (0.5 for probabilities; use 0 for logits);
- real-valued targets of ``pred``'s shape for :class:`MSE` and :class:`MAE` (a (batch,) target
  is accepted for a (batch, 1) prediction).
"""

from __future__ import annotations

from typing import Any

from arrayprop.backends import backend_of
from arrayprop.errors import ShapeError
from arrayprop.registry import resolve

__all__ = ["MAE", "MSE", "Accuracy", "Metric", "accuracy", "get_metric", "mae", "mse"]


class Metric:
    """Base class: a per-sample quantity, summed over a batch on the device.

    Attributes
    ----------
    name : str
        The key under which :func:`~arrayprop.fit` reports it (``val_`` + name for validation).
    """

    name = "metric"

    def batch_sum(self, xp: Any, pred: Any, target: Any, dtype: Any) -> Any:
        """Σ over the batch of the per-sample metric, a 0-d array of ``dtype`` on pred's device.

        Parameters
        ----------
        xp : namespace
            The Array API namespace of ``pred``.
        pred : array, shape (batch, outputs)
            Model outputs.
        target : array, shape (batch,) or (batch, outputs)
            Targets on the same backend (see the module docstring for the accepted forms).
        dtype : dtype
            The floating dtype to accumulate in (float32 keeps counts of up to 2**24 exact).
        """
        raise NotImplementedError

    def __call__(self, pred: Any, target: Any) -> Any:
        """The batch mean, a 0-d array on pred's backend (no host sync)."""
        be = backend_of(pred)
        n = pred.shape[0]
        if n == 0:
            raise ShapeError(f"{self.name}: got an empty batch")
        return self.batch_sum(be.xp, pred, target, pred.dtype) / n

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _as_rows(xp: Any, pred: Any, target: Any, what: str) -> Any:
    """``target`` reshaped to pred's shape, where pred is (batch, 1) and target (batch,)."""
    if pred.ndim == 2 and target.ndim == 1 and pred.shape[1] == 1:
        target = xp.reshape(target, (-1, 1))
    if tuple(target.shape) != tuple(pred.shape):
        raise ShapeError(
            f"{what}: target shape {tuple(target.shape)} does not match prediction shape "
            f"{tuple(pred.shape)}"
        )
    return target


class Accuracy(Metric):
    """Fraction of samples whose predicted class equals the target class.

    Parameters
    ----------
    threshold : float
        For single-output models: a sample is predicted positive when ``pred > threshold``
        (0.5 for probabilities, 0.0 for logits).
    """

    name = "accuracy"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)

    def __repr__(self) -> str:
        return f"Accuracy(threshold={self.threshold})"

    def batch_sum(self, xp: Any, pred: Any, target: Any, dtype: Any) -> Any:
        if pred.ndim == 1 or pred.shape[1] == 1:
            p = xp.reshape(pred, (-1,)) > self.threshold
            t = xp.reshape(target, (-1,))
            if t.shape[0] != p.shape[0]:
                raise ShapeError(f"accuracy: {t.shape[0]} targets for {p.shape[0]} predictions")
            t = t > 0.5 if xp.isdtype(t.dtype, "real floating") else t != 0
            return xp.sum(xp.astype(p == t, dtype))
        predicted = xp.argmax(pred, axis=1)
        if target.ndim == 2:
            if tuple(target.shape) != tuple(pred.shape):
                raise ShapeError(
                    f"accuracy: target rows of shape {tuple(target.shape)} do not match "
                    f"predictions {tuple(pred.shape)}"
                )
            target = xp.argmax(target, axis=1)
        elif target.ndim != 1 or target.shape[0] != pred.shape[0]:
            raise ShapeError(
                f"accuracy: expected labels of shape ({pred.shape[0]},) or rows of shape "
                f"{tuple(pred.shape)}, got {tuple(target.shape)}"
            )
        return xp.sum(xp.astype(predicted == target, dtype))


class MSE(Metric):
    """Per-sample mean over the outputs of (pred − target)²."""

    name = "mse"

    def batch_sum(self, xp: Any, pred: Any, target: Any, dtype: Any) -> Any:
        t = _as_rows(xp, pred, target, self.name)
        diff = xp.astype(pred, dtype) - xp.astype(t, dtype)
        width = pred.shape[1] if pred.ndim == 2 else 1
        return xp.sum(diff * diff) / width


class MAE(Metric):
    """Per-sample mean over the outputs of |pred − target|."""

    name = "mae"

    def batch_sum(self, xp: Any, pred: Any, target: Any, dtype: Any) -> Any:
        t = _as_rows(xp, pred, target, self.name)
        diff = xp.astype(pred, dtype) - xp.astype(t, dtype)
        width = pred.shape[1] if pred.ndim == 2 else 1
        return xp.sum(xp.abs(diff)) / width


METRICS: dict[str, type[Metric]] = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "mse": MSE,
    "mae": MAE,
}


def get_metric(metric: str | Metric) -> Metric:
    """A metric from its name (``accuracy`` or ``acc``, ``mse``, ``mae``) or an instance."""
    return resolve(METRICS, metric, "metric", Metric)


def accuracy(pred: Any, target: Any) -> Any:
    """Fraction of correct predictions in a batch, a 0-d array on pred's backend."""
    return Accuracy()(pred, target)


def mse(pred: Any, target: Any) -> Any:
    """Mean squared error over all elements, a 0-d array on pred's backend."""
    return MSE()(pred, target)


def mae(pred: Any, target: Any) -> Any:
    """Mean absolute error over all elements, a 0-d array on pred's backend."""
    return MAE()(pred, target)
