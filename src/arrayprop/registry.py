"""Name lookups in the registries of losses, metrics and optimizers, with one error message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
B = TypeVar("B")


def lookup(
    registry: Mapping[str, T], name: Any, kind: str, *, instance_of: type | None = None
) -> T:
    """The entry of ``registry`` registered under ``name``, compared case-insensitively.

    Parameters
    ----------
    registry : Mapping[str, T]
        Lower-case names (aliases included) to classes, e.g. ``LOSSES``.
    name : str
        The name asked for.
    kind : str
        What the registry holds, for the message: ``"loss"``, ``"metric"``, ``"optimizer"``.
    instance_of : type, optional
        The base class whose instances the caller also accepts in place of a name; the
        message then says so.

    Returns
    -------
    T
        The registered entry (a class).

    Raises
    ------
    ValueError
        For an unknown name, e.g. ``unknown loss 'hinge'; valid: softmax-ce, ..., l2, or a
        Loss instance``; a non-string ``name`` is named with its type.
    """
    entry = registry.get(name.lower()) if isinstance(name, str) else None
    if entry is None:
        given = repr(name) if isinstance(name, str) else f"{name!r} (a {type(name).__name__})"
        valid = ", ".join(registry)
        if instance_of is not None:
            valid += f", or a {instance_of.__name__} instance"
        raise ValueError(f"unknown {kind} {given}; valid: {valid}")
    return entry


def resolve(registry: Mapping[str, Callable[[], B]], name: Any, kind: str, base: type[B]) -> B:
    """``name`` itself if it is already a ``base`` instance, else ``registry[name]()``.

    The name is matched, and an unknown one reported, by :func:`lookup`.
    """
    if isinstance(name, base):
        return name
    return lookup(registry, name, kind, instance_of=base)()
