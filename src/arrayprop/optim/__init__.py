"""Optimizers (each owns its update rule and its fast paths), clipping and schedules.

One optimizer per module, from simple to complex: :mod:`.sgd`, :mod:`.adagrad`,
:mod:`.rmsprop`, :mod:`.adam` (Adam, AdamW), each a few lines over the base class of
:mod:`.optimizer`, with the update rules of PyTorch's ``optim`` (same hyperparameter names and
defaults, same place for ε, same bias correction). :mod:`.registry` builds one by name,
:mod:`.clip` clips gradients by global norm and :mod:`.schedules` moves the learning rate.
See docs/optimizers.md.
"""

from arrayprop.optim.adagrad import Adagrad
from arrayprop.optim.adam import Adam, AdamW
from arrayprop.optim.clip import clip_grad_norm, global_grad_norm
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.registry import OPTIMIZERS, get_optimizer, optimizer_from_config
from arrayprop.optim.rmsprop import RMSProp
from arrayprop.optim.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    Schedule,
    SequentialLR,
    StepLR,
    with_warmup,
)
from arrayprop.optim.sgd import SGD

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearWarmup",
    "Optimizer",
    "RMSProp",
    "Schedule",
    "SequentialLR",
    "StepLR",
    "clip_grad_norm",
    "get_optimizer",
    "global_grad_norm",
    "optimizer_from_config",
    "with_warmup",
]
