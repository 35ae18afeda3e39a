"""Layers, losses and initialisers: the model side of the math (docs/math.md).

One concept per module: :mod:`.parameter`, :mod:`.layer` (the protocol), :mod:`.dense`,
:mod:`.activations`, :mod:`.containers` (Sequential, mlp), :mod:`.config` (rebuilding models
from their config), :mod:`.losses`, :mod:`.init` and :mod:`.gradcheck`.

Array API only, through ``backend.xp``; see docs/architecture.md for what nn/ may import.
"""

from arrayprop.nn.activations import (
    ACTIVATIONS,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from arrayprop.nn.config import LAYER_TYPES, layer_from_config, sequential_from_config
from arrayprop.nn.containers import Sequential, mlp
from arrayprop.nn.dense import Dense
from arrayprop.nn.gradcheck import gradcheck, relative_error
from arrayprop.nn.init import (
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    normal,
    zeros,
)
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import (
    LOSSES,
    MSE,
    RMSE,
    BinaryCrossEntropy,
    L2Loss,
    Loss,
    SoftmaxCrossEntropy,
    get_loss,
)
from arrayprop.nn.parameter import Parameter

__all__ = [
    "ACTIVATIONS",
    "LAYER_TYPES",
    "LOSSES",
    "MSE",
    "RMSE",
    "Activation",
    "BinaryCrossEntropy",
    "Dense",
    "Identity",
    "L2Loss",
    "Layer",
    "LeakyReLU",
    "Loss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "get_loss",
    "glorot_normal",
    "glorot_uniform",
    "gradcheck",
    "he_normal",
    "he_uniform",
    "layer_from_config",
    "mlp",
    "normal",
    "relative_error",
    "sequential_from_config",
    "zeros",
]
