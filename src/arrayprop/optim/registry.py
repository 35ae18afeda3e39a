"""Optimizers by name: :data:`OPTIMIZERS`, :func:`get_optimizer` and
:func:`optimizer_from_config` (how checkpoints and the CLI build one)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from arrayprop.nn.parameter import Parameter
from arrayprop.optim.adagrad import Adagrad
from arrayprop.optim.adam import Adam, AdamW
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.rmsprop import RMSProp
from arrayprop.optim.sgd import SGD
from arrayprop.registry import lookup

__all__ = ["OPTIMIZERS", "get_optimizer", "optimizer_from_config"]


#: Optimizer classes by their checkpoint / command-line name.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSProp,
    "adagrad": Adagrad,
}


def get_optimizer(name: str, params: Iterable[Parameter], **kwargs: Any) -> Optimizer:
    """Build an optimizer from its name (case-insensitive) and hyperparameters.

    Raises
    ------
    ValueError
        For an unknown name or hyperparameter (the message lists the valid ones), or an invalid
        hyperparameter value.
    """
    cls = lookup(OPTIMIZERS, name, "optimizer")
    valid = [k for k in inspect.signature(cls).parameters if k != "params"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown hyperparameter(s) {', '.join(unknown)}; valid: "
            f"{', '.join(valid)}"
        )
    return cls(params, **kwargs)


def optimizer_from_config(
    params: Iterable[Parameter], type_name: str, hyperparameters: Mapping[str, Any]
) -> Optimizer:
    """Rebuild an optimizer from the ``"type"`` and ``"hyperparameters"`` of a state dict."""
    return get_optimizer(type_name, params, **dict(hyperparameters))
