"""Models from their ``config()``: the registry of layer types that checkpoints can rebuild."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arrayprop.backends import Backend
from arrayprop.nn.activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from arrayprop.nn.containers import Sequential
from arrayprop.nn.dense import Dense
from arrayprop.nn.layer import Layer

__all__ = ["LAYER_TYPES", "layer_from_config", "sequential_from_config"]

#: Layer classes by the ``"type"`` of their config (the class name).
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, Identity, ReLU, Sigmoid, Tanh, LeakyReLU, Softmax)
}


def layer_from_config(config: dict[str, Any], backend: Backend | None = None) -> Layer:
    """Rebuild a layer from :meth:`Layer.config` (Dense gets freshly initialised weights).

    Raises
    ------
    ValueError
        For a ``"type"`` not in :data:`LAYER_TYPES`; the message lists the valid ones.
    """
    kind = config.get("type")
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown layer type {kind!r}; valid: {', '.join(LAYER_TYPES)}")
    return cls.from_config(config, backend=backend)


def sequential_from_config(config: dict[str, Any], backend: Backend | None = None) -> Sequential:
    """Rebuild a :class:`Sequential` (fresh weights) from :meth:`Sequential.config`."""
    if config.get("type") != "Sequential":
        raise ValueError(f"expected a Sequential config, got type {config.get('type')!r}")
    layers: Iterable[dict[str, Any]] = config["layers"]
    return Sequential(*(layer_from_config(c, backend=backend) for c in layers))
