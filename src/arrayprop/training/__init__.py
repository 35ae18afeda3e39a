"""Training: one step, the fit loop, evaluate and predict; callbacks, metrics, precision.

See docs/training.md.
"""

from arrayprop.training.api import evaluate, fit, predict, train_step
from arrayprop.training.callbacks import (
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    ModelCheckpoint,
)
from arrayprop.training.cuda_graph import CudaGraphStep
from arrayprop.training.precision import MixedPrecision, enable_tf32, tf32

__all__ = [
    "Callback",
    "CudaGraphStep",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "MixedPrecision",
    "ModelCheckpoint",
    "enable_tf32",
    "evaluate",
    "fit",
    "predict",
    "tf32",
    "train_step",
]
