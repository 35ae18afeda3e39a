"""The registry of layer types that checkpoints can rebuild: :func:`register_layer`.

A checkpoint stores each layer's registered name and :meth:`~arrayprop.nn.Layer.config`; loading
looks the name up here and never imports anything a file names. See docs/layers.md.
"""

from __future__ import annotations

from typing import Any, TypeVar

from arrayprop.nn.layer import Layer

__all__ = [
    "LAYER_TYPES",
    "layer_config",
    "layer_from_config",
    "layer_type_name",
    "register_layer",
]

#: Layer classes by registered name (the class name unless given).
LAYER_TYPES: dict[str, type] = {}

L = TypeVar("L", bound=type)


def register_layer(cls: L | None = None, *, name: str | None = None) -> Any:
    """Class decorator: let checkpoints rebuild layers of this class.

    ``@register_layer`` registers under the class name, ``@register_layer(name="MyScale")``
    under another. A name already taken by a different class is refused (two classes under one
    name would load each other's checkpoints); the same class defined again (same module and
    qualified name: a re-run notebook cell) replaces its earlier definition.

    Raises
    ------
    ValueError
        When ``name`` is registered to another class.
    TypeError
        When the decorated object is not a :class:`~arrayprop.nn.Layer` subclass.
    """

    def register(klass: L) -> L:
        if not (isinstance(klass, type) and issubclass(klass, Layer)):
            raise TypeError(f"register_layer: expected a Layer subclass, got {klass!r}")
        key = name or klass.__name__
        taken = LAYER_TYPES.get(key)
        # The same definition run again (a notebook cell, a reloaded module) replaces itself.
        redefined = taken is not None and (taken.__module__, taken.__qualname__) == (
            klass.__module__,
            klass.__qualname__,
        )
        if taken is not None and taken is not klass and not redefined:
            raise ValueError(
                f"register_layer: the name {key!r} is already registered to "
                f"{taken.__module__}.{taken.__qualname__}; pass name=... to register "
                f"{klass.__module__}.{klass.__qualname__} under another"
            )
        LAYER_TYPES[key] = klass
        return klass

    return register if cls is None else register(cls)


def layer_type_name(cls: type) -> str | None:
    """The name ``cls`` is registered under, or None (a subclass of a registered class is not
    registered by inheritance: its own forward/backward could differ)."""
    for key, klass in LAYER_TYPES.items():
        if klass is cls:
            return key
    return None


def layer_config(layer: Layer) -> dict[str, Any]:
    """``{"type": registered name, **layer.config()}``: what a checkpoint stores of a layer
    (the class name for an unregistered class, which then cannot be rebuilt)."""
    name = layer_type_name(type(layer)) or type(layer).__name__
    return {"type": name, **layer.config()}


def layer_from_config(config: dict[str, Any], backend: Any = None) -> Any:
    """Rebuild a layer from ``{"type": name, **config}`` (freshly initialised parameters).

    Raises
    ------
    ValueError
        For a ``"type"`` that is not registered; the message lists the registered ones.
    """
    kind = config.get("type") if isinstance(config, dict) else None
    cls = LAYER_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(
            f"unknown layer type {kind!r}; valid: {', '.join(LAYER_TYPES)} (register your own "
            "with @arrayprop.register_layer)"
        )
    return cls.from_config(config, backend=backend)
