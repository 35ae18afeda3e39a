"""``model.summary()``: each layer's name, output shape and parameter count, and the totals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from arrayprop.nn.mode import evaluating

__all__ = ["Summary", "summarize"]


@dataclass
class Summary:
    """What :func:`summarize` measured; ``str()`` gives the table.

    Attributes
    ----------
    rows : list of (name, type, output shape, parameters)
        One per layer of a chain (a Sequential), else one for the model itself; the batch axis
        of an output shape is ``None``.
    total, trainable, non_trainable : int
        Parameter counts (trainable: every :class:`~arrayprop.nn.Parameter`; non-trainable:
        the elements of the model's buffers).
    gemm_flops : int
        Floating-point operations of the forward pass's matrix products, per sample, from each
        layer's ``gemm_flops(output_shape)`` (Dense: 2·in·out per row; a training step costs
        about three times as many).
    """

    title: str
    rows: list[tuple[str, str, tuple[Any, ...], int]] = field(default_factory=list)
    total: int = 0
    trainable: int = 0
    non_trainable: int = 0
    gemm_flops: int = 0

    def __str__(self) -> str:
        head = ("Layer (type)", "Output Shape", "Param #")
        body = [(f"{n} ({t})", _shape(s), f"{p:,}") for n, t, s, p in self.rows]
        widths = [max(len(r[i]) for r in [head, *body]) + 2 for i in range(3)]
        line = "=" * sum(widths)

        def fmt(r: tuple[str, str, str]) -> str:
            return f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:>{widths[2]}}"

        parts = [f'Model: "{self.title}"', line, fmt(head), line]
        parts += [fmt(r) for r in body]
        parts += [
            line,
            f"Total params: {self.total:,}",
            f"Trainable params: {self.trainable:,}",
            f"Non-trainable params: {self.non_trainable:,}",
            f"GEMM FLOPs per sample (forward): {self.gemm_flops:,}",
        ]
        return "\n".join(parts)


def _shape(shape: tuple[Any, ...]) -> str:
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + (",)" if len(shape) == 1 else ")")
    )


def summarize(model: Any, input_shape: tuple[int, ...] | None = None) -> Summary:
    """Run one zero sample through ``model`` (evaluation mode) and tabulate its layers.

    Parameters
    ----------
    input_shape : tuple of int, optional
        The shape of one sample, without the batch axis. Default: ``(model.in_features,)``
        when the model declares its input width.

    Raises
    ------
    ValueError
        When the model declares no input width and ``input_shape`` is not given, or when it
        has no parameters (so no backend to run on).
    """
    be = model.backend
    if be is None:
        raise ValueError(f"summary: {model!r} has no parameters, so no backend to run it on")
    if input_shape is None:
        width = getattr(model, "in_features", None)
        if width is None:
            raise ValueError(
                f"summary: {model!r} declares no input width; pass input_shape=(...) (one "
                "sample's shape, without the batch axis)"
            )
        input_shape = (width,)
    # A chain (Sequential: a list ``layers`` run in order) gets a row per layer; any other
    # model one row, since its forward may use its inner layers in any order.
    chain = getattr(model, "layers", None)
    children = [(str(i), layer) for i, layer in enumerate(chain)] if isinstance(chain, list) else []
    children = children or [("", model)]
    out = Summary(title=type(model).__name__)
    x = be.zeros((1, *input_shape))
    if getattr(children[0][1], "takes_indices", False):  # an Embedding reads integer indices
        x = be.xp.astype(x, be.xp.int64)
    with evaluating(model):
        for name, layer in children:
            x = layer(x)
            count = sum(math.prod(p.shape) for p in layer.parameters())
            out.rows.append((name or "0", type(layer).__name__, (None, *tuple(x.shape)[1:]), count))
            for _, inner in layer.named_layers():
                flops = getattr(inner, "gemm_flops", None)
                if flops is not None:
                    out.gemm_flops += flops(tuple(x.shape)[1:])
    out.trainable = out.total = sum(math.prod(p.shape) for p in model.parameters())
    out.non_trainable = sum(math.prod(b.shape) for b in model.buffers())
    out.total += out.non_trainable
    return out
