"""The training step: forward, loss, backward, update."""

from __future__ import annotations

from typing import Any

from .layers import Layer
from .losses import Loss
from .optim import Optimizer

__all__ = ["train_step"]


def train_step(model: Layer, loss: Loss, optimizer: Optimizer, x: Any, y: Any) -> Any:
    """One gradient-descent step on the mini-batch (x, y).

    Runs the forward pass, the loss and its gradient, the backward pass (which skips ∂C/∂x, not
    needed to train) and ``optimizer.step()``.

    Parameters
    ----------
    x : array, shape (batch, in_features)
        On the model's backend (host data is copied there first).
    y : array
        Targets in the form the loss takes, e.g. integer labels (batch,).

    Returns
    -------
    array, shape ()
        The loss before the update, as a backend scalar: reading it (``float(...)``) is left to
        the caller, so no device→host copy happens here.
    """
    be = model.backend
    if be is not None:
        # Moves host data and casts float data to the model's dtype (on numpy, host data counts
        # as the backend's own and would otherwise reach Dense as float64 for a float32 model).
        x = be.asarray(x)
    pred = model.forward(x)
    value, grad = loss.value_and_grad(pred, y)
    model.backward(grad, inplace=True, input_grad=False)
    optimizer.step()
    return value
