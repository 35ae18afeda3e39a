"""The reference networks and their data: :class:`BenchConfig`, :data:`CONFIGS`, the batch sweep.

Also the benchmark's fixed settings (float32, SGD ``lr``), the valid backend and
implementation names, and the matrix products of the GEMM ceiling (:func:`gemm_shapes`).
"""

from __future__ import annotations

import dataclasses
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


def get_configs(names: str | Sequence[str] | None = None) -> list[BenchConfig]:
    """Configs by name (comma-separated string or sequence); ``None`` means all five."""
    return [CONFIGS[n] for n in parse_names(names, list(CONFIGS), "config")]


def make_data(cfg: BenchConfig, batch: int | None = None, seed: int = 0):
    """Synthetic host data from a seeded NumPy Generator: float32 ``x`` and labels/targets.

    softmax-ce: ``y`` are int64 class labels in ``[0, n_out)``; mse: float32 targets.
    """
    batch = cfg.batch if batch is None else batch
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cfg.sizes[0]), dtype=np.float32)
    if cfg.loss == "softmax-ce":
        y = rng.integers(0, cfg.sizes[-1], size=batch, dtype=np.int64)
    elif cfg.loss == "mse":
        y = rng.standard_normal((batch, cfg.sizes[-1]), dtype=np.float32)
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
