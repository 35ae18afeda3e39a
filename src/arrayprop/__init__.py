"""arrayprop: matrix-form backpropagation on any Array API backend.

The same batched forward and backward code runs on NumPy, CuPy, PyTorch, JAX and
array-api-strict; pick one with :func:`get_backend` (or ``ARRAYPROP_BACKEND``).

Importing arrayprop imports NumPy only: CuPy, PyTorch and JAX are imported when a backend (or
:class:`CudaGraphStep`, :func:`enable_tf32`) first asks for them. Checkpoints are
:func:`save_checkpoint` / :func:`load_checkpoint` (also ``arrayprop.checkpoint.save`` / ``load``).
"""

from .backend import BACKENDS, Backend, backend_of, get_backend
from .callbacks import Callback, EarlyStopping, History, LambdaCallback, ModelCheckpoint
from .checkpoint import Checkpoint, restore_optimizer
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .cuda_graph import CudaGraphStep
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
from .precision import MixedPrecision, enable_tf32, tf32
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
    "Checkpoint",
    "CheckpointError",
    "CosineAnnealingLR",
    "CudaGraphStep",
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
    "MixedPrecision",
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
    "enable_tf32",
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
    "load_checkpoint",
    "mlp",
    "normal",
    "predict",
    "restore_optimizer",
    "save_checkpoint",
    "tf32",
    "train_step",
    "with_warmup",
    "zeros",
]
