"""arrayprop: matrix-form backpropagation on any Array API backend.

The same batched forward and backward code runs on NumPy, CuPy, PyTorch, JAX and
array-api-strict; pick one with :func:`get_backend` (or ``ARRAYPROP_BACKEND``).
"""

from .backend import BACKENDS, Backend, backend_of, get_backend
from .callbacks import Callback, EarlyStopping, History, LambdaCallback, ModelCheckpoint
from .errors import (
    ArrayPropError,
    BackendMismatchError,
    BackendUnavailableError,
    CheckpointError,
    DataError,
    DivergenceError,
    DTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
)
from .gradcheck import gradcheck
from .init import glorot_normal, glorot_uniform, he_normal, he_uniform, normal, zeros
from .layers import (
    Dense,
    Identity,
    Layer,
    LeakyReLU,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    mlp,
)
from .losses import MSE, RMSE, BinaryCrossEntropy, L2Loss, Loss, SoftmaxCrossEntropy, get_loss
from .optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSProp,
    clip_grad_norm,
    get_optimizer,
)
from .schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    Schedule,
    SequentialLR,
    StepLR,
    with_warmup,
)
from .train import evaluate, fit, predict, train_step

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "MSE",
    "RMSE",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "ArrayPropError",
    "Backend",
    "BackendMismatchError",
    "BackendUnavailableError",
    "BinaryCrossEntropy",
    "Callback",
    "CheckpointError",
    "CosineAnnealingLR",
    "DTypeError",
    "DataError",
    "Dense",
    "DivergenceError",
    "EarlyStopping",
    "ExponentialLR",
    "History",
    "Identity",
    "L2Loss",
    "LabelError",
    "LambdaCallback",
    "Layer",
    "LeakyReLU",
    "LinearWarmup",
    "Loss",
    "ModelCheckpoint",
    "NonFiniteError",
    "Optimizer",
    "Parameter",
    "RMSProp",
    "ReLU",
    "Schedule",
    "Sequential",
    "SequentialLR",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "StepLR",
    "Tanh",
    "__version__",
    "backend_of",
    "clip_grad_norm",
    "evaluate",
    "fit",
    "get_backend",
    "get_loss",
    "get_optimizer",
    "glorot_normal",
    "glorot_uniform",
    "gradcheck",
    "he_normal",
    "he_uniform",
    "mlp",
    "normal",
    "predict",
    "train_step",
    "with_warmup",
    "zeros",
]
