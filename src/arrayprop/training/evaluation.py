"""The model over a whole data set, on the device: outputs, and loss and metric sums.

For :func:`arrayprop.evaluate`, :func:`arrayprop.predict` and the validation of ``fit``. The data
comes checked and placed from :mod:`arrayprop.data.adapter`; sums stay on the device until the
caller reads them (once). Array API only.
"""

from __future__ import annotations

from typing import Any

from arrayprop.backends import Backend
from arrayprop.data.adapter import DeviceData
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss
from arrayprop.nn.mode import evaluating
from arrayprop.training.metrics import Metric

__all__ = ["accumulator_dtype", "eval_sums", "forward_all", "outputs"]


def accumulator_dtype(be: Backend) -> Any:
    """Sums are kept in float64 for float64 models, else float32 (exact counts to 2**24)."""
    xp = be.xp
    return xp.float64 if be.dtype == xp.float64 else xp.float32


def forward_all(xp: Any, model: Layer, x: Any, batch: int) -> Any:
    """The model's output for a device array x (n, features), forward pass by forward pass of
    ``batch`` rows: an array (n, outputs)."""
    n = x.shape[0]
    outs = [model.forward(x[s : min(s + batch, n), ...]) for s in range(0, n, batch)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def outputs(model: Layer, d: DeviceData, batch: int) -> Any:
    """The model's output for the whole set ``d`` in evaluation mode: a device array (n, ...)."""
    xp = d.be.xp
    with evaluating(model):
        outs = [forward_all(xp, model, xs, batch) for xs, _ in d.chunks(batch)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def eval_sums(
    model: Layer, d: DeviceData, loss: Loss | None, metrics: list[Metric], batch: int
) -> Any:
    """Device vector [Σ_batches loss·n_b (if ``loss``), Σ metric_j ...] over the whole set.

    Divided by ``d.n``, these are the batch-size-weighted mean loss and the metrics. The model
    runs in evaluation mode.
    """
    with evaluating(model):
        return _eval_sums(model, d, loss, metrics, batch)


def _eval_sums(
    model: Layer, d: DeviceData, loss: Loss | None, metrics: list[Metric], batch: int
) -> Any:
    be = d.be
    xp = be.xp
    acc = accumulator_dtype(be)
    classes = xp.arange(d.outputs, dtype=xp.int64, device=be.device) if d.labels else None
    total = None
    for xs, ys in d.chunks(batch):
        pred = forward_all(xp, model, xs, batch)
        parts = [m.batch_sum(xp, pred, ys, acc) for m in metrics]
        if loss is not None:
            t = xp.astype(ys[:, None] == classes, pred.dtype) if d.labels else ys
            m = xs.shape[0]
            values = []
            for s in range(0, m, batch):
                e = min(s + batch, m)
                value, _ = loss.value_and_grad(pred[s:e, ...], t[s:e, ...])
                values.append(value * (e - s))
            parts.insert(0, xp.sum(xp.astype(xp.stack(values), acc)))
        sums = xp.stack(parts) if parts else xp.zeros((0,), dtype=acc, device=be.device)
        total = sums if total is None else total + sums
    return total
