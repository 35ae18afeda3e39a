"""``Embedding``: a lookup table, Y = W[I], and its matrix-form backward pass, a scatter-add.

Array API only, through ``backend.xp``; the weight gradient goes through
:func:`arrayprop.kernels.embedding_grad` (the portable one-hot GEMM, a scatter-add on NumPy).
Equation numbers refer to docs/math.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrayprop import kernels
from arrayprop.backends import Backend, get_backend
from arrayprop.errors import DTypeError, ShapeError
from arrayprop.nn.init import INITIALIZERS, draw, get_initializer, normal
from arrayprop.nn.layer import Layer, check_grad, config_dims
from arrayprop.nn.parameter import Parameter
from arrayprop.nn.registry import register_layer
from arrayprop.random import host_rng
from arrayprop.validation import POSITIVE_INT, check, check_indices

__all__ = ["Embedding"]

#: The default initialiser, PyTorch's: N(0, 1).
STANDARD_NORMAL = "standard_normal"


def _initializer(init: str | Callable) -> Callable:
    return normal(1.0) if init == STANDARD_NORMAL else get_initializer(init)


@register_layer
class Embedding(Layer):
    """Lookup table: integer indices (batch, ...) -> their rows of W, (batch, ..., dim).

    Parameters
    ----------
    num_embeddings : int
        Rows of the table (the vocabulary size): indices lie in [0, num_embeddings).
    embedding_dim : int
        Width of each row.
    weight : array-like, shape (num_embeddings, embedding_dim), optional
        Exact initial table (copied onto the backend). Default: drawn by ``init``.
    init : str or callable
        ``"standard_normal"`` (default, N(0, 1) as in PyTorch), any name of
        :func:`~arrayprop.nn.init.get_initializer`, or ``f(shape, rng) -> ndarray``.
    seed : int or numpy.random.Generator, optional
        Seed of the host generator the table is drawn from.
    backend : str or Backend, optional
        Where the table lives (default: :func:`~arrayprop.get_backend`).
    dtype : str, optional
        Overrides the backend's float dtype.

    Attributes
    ----------
    weight : Parameter, shape (num_embeddings, embedding_dim)

    Notes
    -----
    The input is not differentiable: ``backward`` returns None. Indices must be integers; on
    host backends (NumPy, array-api-strict) every forward pass checks their range and names the
    first bad one. On device backends that check would cost a device→host sync per step, so it
    is not made: an out-of-range index there gives undefined results (a wrong row, or an error
    from the library).
    """

    speed_hints = True
    #: The input is integer indices, not features: fit, evaluate and predict keep its dtype.
    takes_indices = True

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        weight: Any = None,
        init: str | Callable = STANDARD_NORMAL,
        seed: Any = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        self.num_embeddings = check("Embedding", "num_embeddings", num_embeddings, POSITIVE_INT)
        self.embedding_dim = check("Embedding", "embedding_dim", embedding_dim, POSITIVE_INT)
        self.backend = be = get_backend(backend, dtype=dtype)
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        shape = (num_embeddings, embedding_dim)
        if weight is None:
            w = be.asarray(
                draw(_initializer(init), shape, host_rng(seed), "Embedding"), dtype=be.dtype
            )
        else:
            w = be.asarray(weight, dtype=be.dtype, what=f"{self!r}: weight")
            if tuple(w.shape) != shape:
                raise ShapeError(f"{self!r}: weight must have shape {shape}, got {tuple(w.shape)}")
            # The optimizers update parameters in place: the layer must own its copy.
            w = be.xp.asarray(w, copy=True)
        self.weight = Parameter(w, "weight")
        self._idx = None
        self._shape: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"

    @property
    def out_features(self) -> int:
        """The output's last axis, ``embedding_dim`` (read by ``fit`` to check targets)."""
        return self.embedding_dim

    def _indices(self, x: Any) -> Any:
        """``x`` checked: integers of this backend, in range where that is free to check."""
        be = self.backend
        x = be.asarray(x, what=f"{self!r} input")
        xp = be.xp
        if not xp.isdtype(x.dtype, "integral"):
            raise DTypeError(
                f"{self!r}: indices must be integers, got {x.dtype}; cast them to an integer "
                "dtype (an index is a row number, never a float)"
            )
        if x.ndim < 1:
            raise ShapeError(f"{self!r}: expected indices of shape (batch, ...), got a 0-d array")
        if be.on_host:  # a device backend would pay a device→host sync per step for it
            check_indices(be.to_host(x), self.num_embeddings, repr(self))
        return x

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        """Y = W[I].  x : integer (batch, ...) -> (batch, ..., embedding_dim)."""
        x = self._indices(x)
        xp = self.backend.xp
        shape = tuple(x.shape)
        idx = xp.reshape(x, (-1,))
        self._idx, self._shape = idx, shape
        y = xp.take(self.weight.data, idx, axis=0)  # eq. 40
        return xp.reshape(y, (*shape, self.embedding_dim))

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> None:
        """Given G = ∂C/∂Y (batch, ..., dim): sets ∂C/∂W, G's rows summed into the rows their
        indices name (repeated indices accumulate). Returns None: indices have no gradient."""
        idx = self._idx
        if idx is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        check_grad(self, grad_out, self.weight.data.dtype)
        expected = (*self._shape, self.embedding_dim)
        if tuple(grad_out.shape) != expected:
            raise ShapeError(
                f"{self!r}: expected a gradient of shape {expected}, got {tuple(grad_out.shape)}"
            )
        be = self.backend
        g = be.xp.reshape(grad_out, (-1, self.embedding_dim))
        self._idx = self._shape = None
        self.weight.grad = kernels.embedding_grad(be, idx, g, self.num_embeddings)  # eq. 41
        return None

    def clear_cache(self) -> None:
        self._idx = self._shape = None

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        (n,), (d,) = config_dims(config, "num_embeddings"), config_dims(config, "embedding_dim")
        return {"weight": (n, d)}

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
        }
        if self.init in INITIALIZERS or self.init == STANDARD_NORMAL:
            config["init"] = self.init
        return config
