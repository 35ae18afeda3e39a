"""The layer-list grammar of ``arrayprop train --model`` (:func:`parse_layers`, :func:`build`).

``--model`` takes either the widths form ``64-128-10`` (an MLP, see
:func:`arrayprop.cli.args.model_spec`) or a comma-separated list of layers::

    conv16k3p1,relu,maxpool2,flatten,dense64,relu,dropout0.3,dense10

Each item is a name with its numbers written straight after it (:data:`GRAMMAR`). Only the
output sizes are written: the input of each layer (channels, features) follows from the data
and from the layers before it. The model reads images (channels, height, width) when a conv or
pooling layer comes before the first ``flatten`` or ``dense``, else flat feature vectors.

Parsing (:func:`parse_layers`) checks each item on its own and raises
``argparse.ArgumentTypeError``; building (:func:`build`) follows the shapes along the chain and
raises :class:`~arrayprop.cli.args.UsageError`. Either way the message is one line that names
the item and what is allowed there.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from arrayprop.backends import Backend
from arrayprop.cli.args import UsageError, model_spec
from arrayprop.nn.activations import ACTIVATIONS
from arrayprop.nn.containers import Sequential
from arrayprop.nn.conv import Conv2D
from arrayprop.nn.dense import Dense
from arrayprop.nn.dropout import Dropout
from arrayprop.nn.flatten import Flatten
from arrayprop.nn.layer import Layer
from arrayprop.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from arrayprop.nn.pooling import AvgPool2D, MaxPool2D
from arrayprop.random import host_rng

__all__ = [
    "GRAMMAR",
    "LayerSpec",
    "ModelSpec",
    "build",
    "parse_layers",
    "parse_model",
    "reads_images",
]

#: Each layer item: its form and what it builds (N, C, K, S: ints >= 1; P: int >= 0).
GRAMMAR: dict[str, tuple[str, str]] = {
    "dense": ("denseN", "Dense with N outputs"),
    "conv": (
        "convCkK[sS][pP]",
        "Conv2D, C output channels, KxK kernel, stride S (1), padding P (0)",
    ),
    "maxpool": ("maxpoolK[sS]", "MaxPool2D, KxK window, stride S (K)"),
    "avgpool": ("avgpoolK[sS]", "AvgPool2D, KxK window, stride S (K)"),
    "flatten": ("flatten", "Flatten to (batch, features)"),
    "bn": ("bn", "BatchNorm2d on images, BatchNorm1d on features"),
    "ln": ("ln", "LayerNorm over all the axes of a sample"),
    "dropout": ("dropout[P]", "Dropout with drop probability P in [0, 1) (0.5)"),
}

#: The numbers after each name: one regular expression per layer name.
_ARGUMENTS: dict[str, str] = {
    "dense": r"(\d+)",
    "conv": r"(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?",
    "maxpool": r"(\d+)(?:s(\d+))?",
    "avgpool": r"(\d+)(?:s(\d+))?",
    "flatten": "",
    "bn": "",
    "ln": "",
    "dropout": r"((?:\d+(?:\.\d*)?|\.\d+)(?:e-?\d+)?)?",
}
_ITEM = re.compile(r"([a-z_]+)(.*)", re.DOTALL)
_SPATIAL = ("conv", "maxpool", "avgpool")


def allowed() -> str:
    """The item forms, for error messages."""
    forms = [form for form, _ in GRAMMAR.values()]
    return ", ".join([*forms, *ACTIVATIONS])


@dataclass(frozen=True)
class LayerSpec:
    """One parsed item: ``name`` (a key of :data:`GRAMMAR` or an activation) and its numbers."""

    text: str
    name: str
    numbers: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A parsed layer list: the items in order, and the text they came from."""

    text: str
    layers: tuple[LayerSpec, ...]

    def __str__(self) -> str:
        return self.text


def _item(text: str, position: int) -> LayerSpec:
    where = f"item {position} {text!r}"
    match = _ITEM.fullmatch(text)
    name = match.group(1) if match else ""
    if name in ACTIVATIONS and match and not match.group(2):
        return LayerSpec(text, name)
    if name not in _ARGUMENTS:
        raise argparse.ArgumentTypeError(f"{where} is not a layer; allowed: {allowed()}")
    numbers = re.fullmatch(_ARGUMENTS[name], match.group(2)) if match else None
    if numbers is None:
        form, meaning = GRAMMAR[name]
        raise argparse.ArgumentTypeError(f"{where}: write {form} ({meaning})")
    if name == "dropout":
        p = 0.5 if numbers.group(1) is None else float(numbers.group(1))
        if not 0 <= p < 1:
            raise argparse.ArgumentTypeError(
                f"{where}: the drop probability must be in [0, 1), got {p:g}"
            )
        return LayerSpec(text, name, (p,))
    values = tuple(None if g is None else int(g) for g in numbers.groups())
    if name == "conv":
        out, kernel, stride, padding = values
        values = (out, kernel, 1 if stride is None else stride, padding or 0)
    elif name in ("maxpool", "avgpool"):
        values = (values[0], values[0] if values[1] is None else values[1])
    positive = values[:3] if name == "conv" else values
    if any(v < 1 for v in positive):
        form, _ = GRAMMAR[name]
        padding = " (padding P >= 0)" if name == "conv" else ""
        raise argparse.ArgumentTypeError(f"{where}: the numbers of {form} must be >= 1{padding}")
    return LayerSpec(text, name, values)


def parse_layers(text: str) -> ModelSpec:
    """Parse a comma-separated layer list (``argparse.ArgumentTypeError`` on a bad item)."""
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise argparse.ArgumentTypeError(
            f"{text!r} has an empty item; separate layers with single commas, e.g. "
            "conv8k3p1,relu,flatten,dense10"
        )
    layers = tuple(_item(item.strip(), i) for i, item in enumerate(items, start=1))
    return ModelSpec(text, layers)


def parse_model(text: str) -> list[int] | ModelSpec:
    """``--model``: the widths form (a list of ints) or a layer list (a :class:`ModelSpec`).

    Text with a ``-``, or nothing but numbers between commas (``64,128,10``), is the widths form
    of an MLP (:func:`~arrayprop.cli.args.model_spec`); anything else is a layer list.
    """
    parts = text.replace(",", "-").split("-")
    if "-" in text or all(p.strip().isdigit() for p in parts):
        return model_spec(text)
    return parse_layers(text)


def reads_images(spec: ModelSpec) -> bool:
    """Whether the model reads images: a conv or pooling layer before any flatten or dense."""
    for layer in spec.layers:
        if layer.name in _SPATIAL:
            return True
        if layer.name in ("flatten", "dense"):
            return False
    return False


def _fits(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"{shape[0]} features"
    return "images of shape (" + ", ".join(map(str, shape)) + ")"


def build(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    classes: int,
    *,
    seed: Any = None,
    backend: Backend | None = None,
) -> Sequential:
    """The :class:`Sequential` that ``spec`` describes, for samples of ``input_shape``.

    ``input_shape`` is (features,) or (channels, height, width). The last layer must give
    ``classes`` outputs. Raises :class:`UsageError` naming the item whose input does not fit.
    """
    rng = host_rng(seed)
    shape = tuple(input_shape)
    layers: list[Layer] = []
    for i, item in enumerate(spec.layers, start=1):
        where = f"--model {spec}: item {i} {item.text!r}"
        image = len(shape) == 3
        if item.name in _SPATIAL and not image:
            raise UsageError(
                f"{where} needs images (channels, height, width) but gets {_shape(shape)}; "
                "conv and pooling layers must come before flatten and dense"
            )
        if item.name == "dense" and image:
            raise UsageError(f"{where} gets {_shape(shape)}; put flatten before it")
        if item.name == "conv":
            out, kernel, stride, padding = item.numbers
            h, w = (_fits(n, kernel, stride, padding) for n in shape[1:])
            if h < 1 or w < 1:
                raise UsageError(
                    f"{where}: a {kernel}x{kernel} kernel does not fit {_shape(shape)}"
                )
            layers.append(Conv2D(shape[0], out, kernel, stride, padding, seed=rng, backend=backend))
            shape = (out, h, w)
        elif item.name in ("maxpool", "avgpool"):
            kernel, stride = item.numbers
            h, w = (_fits(n, kernel, stride, 0) for n in shape[1:])
            if h < 1 or w < 1:
                raise UsageError(
                    f"{where}: a {kernel}x{kernel} window does not fit {_shape(shape)}"
                )
            pool = MaxPool2D if item.name == "maxpool" else AvgPool2D
            layers.append(pool(kernel, stride))
            shape = (shape[0], h, w)
        elif item.name == "dense":
            layers.append(Dense(shape[0], item.numbers[0], seed=rng, backend=backend))
            shape = (item.numbers[0],)
        elif item.name == "flatten":
            layers.append(Flatten())
            size = 1
            for n in shape:
                size *= n
            shape = (size,)
        elif item.name == "bn":
            norm = BatchNorm2d if image else BatchNorm1d
            layers.append(norm(shape[0], backend=backend))
        elif item.name == "ln":
            layers.append(LayerNorm(shape, backend=backend))
        elif item.name == "dropout":
            layers.append(Dropout(item.numbers[0]))
        else:
            layers.append(ACTIVATIONS[item.name]())
    if not any(item.name in ("dense", "conv") for item in spec.layers):
        raise UsageError(f"--model {spec}: has no dense or conv layer, so nothing to train")
    if shape != (classes,):
        end = "flatten,dense" if len(shape) == 3 else "dense"
        raise UsageError(
            f"--model {spec}: ends with {_shape(shape)}, but the data has {classes} classes; "
            f"end with {end}{classes}"
        )
    return Sequential(*layers)
