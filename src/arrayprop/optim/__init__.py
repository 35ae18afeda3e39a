"""Optimizers (each owns its update rule and its fast paths), clipping and schedules.

See docs/optimizers.md.
"""

from arrayprop.optim.optimizers import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSProp,
    clip_grad_norm,
    get_optimizer,
    global_grad_norm,
    optimizer_from_config,
)
from arrayprop.optim.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    Schedule,
    SequentialLR,
    StepLR,
    with_warmup,
)

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
