"""Layers, losses and initialisers: the model side of the math (docs/math.md).

Array API only, through ``backend.xp``; see docs/architecture.md for what nn/ may import.
"""

from arrayprop.nn.gradcheck import gradcheck, relative_error
from arrayprop.nn.init import (
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    normal,
    zeros,
)
from arrayprop.nn.layers import (
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
from arrayprop.nn.losses import (
    MSE,
    RMSE,
    BinaryCrossEntropy,
    L2Loss,
    Loss,
    SoftmaxCrossEntropy,
    get_loss,
)

__all__ = [
    "MSE",
    "RMSE",
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
    "mlp",
    "normal",
    "relative_error",
    "zeros",
]
