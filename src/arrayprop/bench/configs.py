"""The reference networks and their data: :class:`BenchConfig` (MLPs, :data:`CONFIGS`),
:class:`ConvBenchConfig` (CNNs, :data:`CONV_CONFIGS`), the batch sweep.

Also the benchmark's fixed settings (float32, SGD ``lr``), the valid backend and
implementation names, and the matrix products of the GEMM ceiling (:func:`gemm_shapes`,
:meth:`ConvBenchConfig.gemm_shapes`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

LR = 0.01
DTYPE = "float32"
BACKENDS = ("numpy", "cupy", "torch", "jax", "array_api_strict")
IMPLS = ("arrayprop", "gemm", "torch-eager", "numpy-ref")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One reference network: layer sizes, activation, loss and batch size."""

    name: str
    sizes: tuple[int, ...]
    activation: str
    loss: str  # "softmax-ce" (integer labels) or "mse" (float targets)
    batch: int

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in pairwise(self.sizes))

    def describe(self) -> str:
        return f"{'-'.join(map(str, self.sizes))} {self.activation} {self.loss} b={self.batch}"

    @property
    def n_classes(self) -> int:
        """Width of the output layer (the label range for softmax-ce)."""
        return self.sizes[-1]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return (self.sizes[0],)

    def gemm_shapes(self, batch: int | None = None) -> list[tuple[str, int, int, int]]:
        """The matrix products of one train step (:func:`gemm_shapes`)."""
        return gemm_shapes(self.sizes, self.batch if batch is None else batch)


@dataclasses.dataclass(frozen=True)
class ConvBenchConfig:
    """One reference CNN: input shape, layer list, loss and batch size.

    ``layers`` holds one tuple per layer: ``("conv", out_channels, kernel, stride, padding)``,
    ``("maxpool", kernel)``, ``("relu",)``, ``("flatten",)`` or ``("dense", out_features)``;
    the input sizes of each follow from ``input_shape`` (C, H, W) and the layers before it.
    :meth:`model` writes it in the ``arrayprop train --model`` grammar.
    """

    name: str
    input_shape: tuple[int, int, int]
    layers: tuple[tuple, ...]
    loss: str
    batch: int
    activation: str = "relu"

    def __post_init__(self) -> None:
        self.plan()  # refuse a layer list whose shapes do not chain

    def plan(self) -> list[tuple[tuple, tuple[int, ...], tuple[int, ...]]]:
        """Each layer with its per-sample input and output shapes.

        Raises
        ------
        ValueError
            For an unknown layer kind, or a layer that does not fit the shape before it.
        """
        shape: tuple[int, ...] = tuple(self.input_shape)
        out = []
        for layer in self.layers:
            kind = layer[0]
            if kind == "conv" and len(shape) == 3:
                _, o, k, s, p = layer
                h, w = ((d + 2 * p - k) // s + 1 for d in shape[1:])
                new = (o, h, w)
            elif kind == "maxpool" and len(shape) == 3:
                k = layer[1]
                new = (shape[0], (shape[1] - k) // k + 1, (shape[2] - k) // k + 1)
            elif kind == "flatten":
                new = (math.prod(shape),)
            elif kind == "dense" and len(shape) == 1:
                new = (layer[1],)
            elif kind == "relu":
                new = shape
            else:
                raise ValueError(f"{self.name}: layer {layer!r} does not fit input shape {shape}")
            if min(new) < 1:
                raise ValueError(f"{self.name}: layer {layer!r} leaves shape {new}")
            out.append((layer, shape, new))
            shape = new
        return out

    def model(self) -> str:
        """The layer list in the ``arrayprop train --model`` grammar."""
        items = []
        for layer in self.layers:
            kind = layer[0]
            if kind == "conv":
                _, o, k, s, p = layer
                items.append(f"conv{o}k{k}" + (f"s{s}" if s != 1 else "") + (f"p{p}" if p else ""))
            elif kind in ("maxpool", "dense"):
                items.append(f"{kind}{layer[1]}")
            else:
                items.append(kind)
        return ",".join(items)

    def describe(self) -> str:
        c, h, w = self.input_shape
        return f"{c}x{h}x{w} {self.model()} {self.loss} b={self.batch}"

    @property
    def n_classes(self) -> int:
        return self.plan()[-1][2][0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape)

    @property
    def n_params(self) -> int:
        total = 0
        for layer, before, after in self.plan():
            if layer[0] == "conv":
                total += after[0] * before[0] * layer[2] ** 2 + after[0]
            elif layer[0] == "dense":
                total += before[0] * after[0] + after[0]
        return total

    def gemm_shapes(self, batch: int | None = None) -> list[tuple[str, int, int, int]]:
        """The ``(label, m, k, n)`` matrix products of one train step (Conv2D's, eqs. 30–32).

        Per conv layer with im2col matrix cols (M = batch·H_out·W_out rows, K = C·k·k columns)
        and O filters: forward cols @ W_matᵀ (M x K)(K x O), weight gradient δᵀ @ cols
        (O x M)(M x K), and, except for the first layer (its input is the data), the
        gradient of cols δ @ W_mat (M x O)(O x K). Dense layers as :func:`gemm_shapes`.
        """
        batch = self.batch if batch is None else batch
        shapes = []
        for i, (layer, before, after) in enumerate(self.plan()):
            if layer[0] == "conv":
                m, k, o = batch * after[1] * after[2], before[0] * layer[2] ** 2, after[0]
                shapes += [(f"L{i}.fwd", m, k, o), (f"L{i}.dW", o, m, k)]
                if i > 0:
                    shapes.append((f"L{i}.dA", m, o, k))
            elif layer[0] == "dense":
                n_in, n_out = before[0], after[0]
                shapes += [(f"L{i}.fwd", batch, n_in, n_out), (f"L{i}.dW", n_in, batch, n_out)]
                if i > 0:
                    shapes.append((f"L{i}.dA", batch, n_out, n_in))
        return shapes


CONFIGS: dict[str, BenchConfig] = {
    c.name: c
    for c in (
        BenchConfig("tiny", (784, 128, 10), "relu", "softmax-ce", 64),
        BenchConfig("small", (784, 256, 256, 10), "relu", "softmax-ce", 128),
        BenchConfig("medium", (784, 1024, 1024, 10), "relu", "softmax-ce", 256),
        BenchConfig("large", (784, 2048, 2048, 2048, 10), "relu", "softmax-ce", 512),
        BenchConfig("wide", (1024, 4096, 4096, 1024), "relu", "mse", 1024),
    )
}
#: The CNNs (not in the default set: name them with ``--configs``): a digits-size CNN on 8x8
#: images (the network of examples/cnn_digits.py) and LeNet-5 on 28x28 (MNIST-size) images.
CONV_CONFIGS: dict[str, ConvBenchConfig] = {
    c.name: c
    for c in (
        ConvBenchConfig(
            "digits-cnn",
            (1, 8, 8),
            (
                ("conv", 16, 3, 1, 1),
                ("relu",),
                ("conv", 32, 3, 1, 1),
                ("relu",),
                ("maxpool", 2),
                ("flatten",),
                ("dense", 64),
                ("relu",),
                ("dense", 10),
            ),
            "softmax-ce",
            64,
        ),
        ConvBenchConfig(
            "lenet",
            (1, 28, 28),
            (
                ("conv", 6, 5, 1, 2),
                ("relu",),
                ("maxpool", 2),
                ("conv", 16, 5, 1, 0),
                ("relu",),
                ("maxpool", 2),
                ("flatten",),
                ("dense", 120),
                ("relu",),
                ("dense", 84),
                ("relu",),
                ("dense", 10),
            ),
            "softmax-ce",
            64,
        ),
    )
}
#: Every config by name: the MLPs, then the CNNs.
ALL_CONFIGS: dict[str, BenchConfig | ConvBenchConfig] = {**CONFIGS, **CONV_CONFIGS}
SWEEP_CONFIG = "medium"
SWEEP_BATCHES = tuple(2**k for k in range(14))  # 1 .. 8192


def parse_names(text: str | Sequence[str] | None, valid: Sequence[str], what: str) -> list[str]:
    """Names picked from ``valid``, in the order given and without repeats.

    Parameters
    ----------
    text
        A comma-separated string or a sequence of names; ``None`` means all of ``valid``.
    valid
        The names allowed.
    what
        What a name is (``"backend"``, ``"config"`` ...), for the error message.

    Raises
    ------
    ValueError
        If a name is not in ``valid`` or no name is given; the message lists the valid ones.
    """
    if text is None:
        return list(valid)
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
            f"valid {what}s: {', '.join(valid)}"
        )
    return list(dict.fromkeys(names))


def get_configs(
    names: str | Sequence[str] | None = None,
) -> list[BenchConfig | ConvBenchConfig]:
    """Configs by name (comma-separated string or sequence) among the MLPs and the CNNs;
    ``None`` means the five MLPs (:data:`CONFIGS`), the default set."""
    if names is None:
        return list(CONFIGS.values())
    return [ALL_CONFIGS[n] for n in parse_names(names, list(ALL_CONFIGS), "config")]


def make_data(cfg: BenchConfig, batch: int | None = None, seed: int = 0):
    """Synthetic host data from a seeded NumPy Generator: float32 ``x`` and labels/targets.

    ``x`` is (batch, n_in) for an MLP, (batch, C, H, W) for a CNN. softmax-ce: ``y`` are int64
    class labels in ``[0, n_out)``; mse: float32 targets.
    """
    batch = cfg.batch if batch is None else batch
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *cfg.sample_shape), dtype=np.float32)
    if cfg.loss == "softmax-ce":
        y = rng.integers(0, cfg.n_classes, size=batch, dtype=np.int64)
    elif cfg.loss == "mse":
        y = rng.standard_normal((batch, cfg.n_classes), dtype=np.float32)
    else:
        raise ValueError(f"unknown loss {cfg.loss!r}")
    return x, y


# --------------------------------------------------------------------------- GEMM ceiling


def gemm_shapes(sizes: Sequence[int], batch: int) -> list[tuple[str, int, int, int]]:
    """The ``(label, m, k, n)`` matrix products (``(m x k) @ (k x n)``) of one train step.

    Per layer ``i``: forward ``A @ W`` (batch x n_in)(n_in x n_out), weight gradient
    ``A.T @ D`` (n_in x batch)(batch x n_out), and, except for the first layer (the input
    is data: its gradient is never needed), input gradient ``D @ W.T``
    (batch x n_out)(n_out x n_in).
    """
    shapes = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        shapes.append((f"L{i}.fwd", batch, n_in, n_out))
        shapes.append((f"L{i}.dW", n_in, batch, n_out))
        if i > 0:
            shapes.append((f"L{i}.dA", batch, n_out, n_in))
    return shapes


def gemm_flops(sizes: Sequence[int], batch: int) -> int:
    """FLOPs of :func:`gemm_shapes` counting a multiply-add as 2."""
    return sum(2 * m * k * n for _, m, k, n in gemm_shapes(sizes, batch))
