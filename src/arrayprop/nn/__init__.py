"""Layers, losses and initialisers: the model side of the math (docs/math.md).

One concept per module: :mod:`.parameter`, :mod:`.layer` (the protocol), :mod:`.dense`,
:mod:`.embedding`, :mod:`.activations`, :mod:`.dropout`, :mod:`.flatten`, :mod:`.normalization`
(BatchNorm, LayerNorm), :mod:`.conv` (Conv2D), :mod:`.pooling` (MaxPool2D, AvgPool2D),
:mod:`.containers` (Sequential, mlp), :mod:`.registry` (the layer types checkpoints rebuild),
:mod:`.summary`, :mod:`.losses`, :mod:`.init` and :mod:`.gradcheck`.

Array API only, through ``backend.xp``; see docs/architecture.md for what nn/ may import.
"""

from arrayprop.nn.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from arrayprop.nn.containers import Sequential, mlp
from arrayprop.nn.conv import Conv2D
from arrayprop.nn.dense import Dense
from arrayprop.nn.dropout import Dropout
from arrayprop.nn.embedding import Embedding
from arrayprop.nn.flatten import Flatten
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
from arrayprop.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from arrayprop.nn.parameter import Buffer, Parameter
from arrayprop.nn.pooling import AvgPool2D, MaxPool2D
from arrayprop.nn.registry import LAYER_TYPES, layer_config, layer_from_config, register_layer
from arrayprop.nn.standardize import Standardize

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "LAYER_TYPES",
    "LOSSES",
    "MSE",
    "RMSE",
    "Activation",
    "AvgPool2D",
    "BatchNorm1d",
    "BatchNorm2d",
    "BinaryCrossEntropy",
    "Buffer",
    "Conv2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "L2Loss",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Loss",
    "MaxPool2D",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Softplus",
    "Standardize",
    "Tanh",
    "get_loss",
    "glorot_normal",
    "glorot_uniform",
    "gradcheck",
    "he_normal",
    "he_uniform",
    "layer_config",
    "layer_from_config",
    "mlp",
    "normal",
    "register_layer",
    "relative_error",
    "zeros",
]
