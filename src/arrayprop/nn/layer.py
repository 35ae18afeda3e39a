"""The layer protocol (:class:`Layer`) and the input checks every layer shares.

Data is batch-first (rows are samples) and weights are ``(in_features, out_features)``, so the
equations of docs/math.md read directly:

- forward (eq. 1–2):  Z = A_prev W + b,  A = f(Z)
- backward (eq. 3–6): δ = ∂C/∂A ⊙ f'(Z),  ∂C/∂W = A_prevᵀ δ,  ∂C/∂b = Σ_rows δ,
  ∂C/∂A_prev = δ Wᵀ

A layer's ``forward`` keeps only what its ``backward`` needs (Dense: its input; an activation:
its output). ``backward`` returns ∂C/∂input and stores each parameter's gradient in ``.grad``,
computed for the whole mini-batch at once as matrix products.
"""

from __future__ import annotations

from typing import Any

from arrayprop.backends import Backend, backend_of
from arrayprop.errors import DTypeError, ShapeError
from arrayprop.nn.parameter import Parameter

__all__ = ["Layer", "check_2d", "check_grad"]


class Layer:
    """The layer protocol.

    ``forward(x)`` caches what ``backward`` needs and returns the output; ``backward(grad_out)``
    returns ∂C/∂x and sets the ``.grad`` of each parameter. ``inplace=True`` tells a layer that
    the caller owns the argument's buffer and will not read it again, so a fast path may reuse
    it (the portable path never does); :class:`~arrayprop.nn.Sequential` uses this for its
    intermediates.

    ``backward(..., sgd_lr=η)`` asks every layer with parameters to apply plain SGD itself,
    W ← W − η ∂C/∂W, as it computes the gradient, and to leave ``.grad`` None (eq. 7a of
    docs/math.md: on NumPy one GEMM with β = 1, the gradient never written). Only layers whose
    ``fuses_sgd`` is True take that argument; :func:`~arrayprop.train_step` checks it.
    """

    #: Whether ``forward`` keeps a reference to its own output (so it must not be overwritten).
    caches_output = False
    #: Whether ``backward`` takes ``sgd_lr`` (layers without parameters just ignore it).
    fuses_sgd = False
    backend: Backend | None = None

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        raise NotImplementedError

    def backward(
        self,
        grad_out: Any,
        *,
        inplace: bool = False,
        input_grad: bool = True,
        sgd_lr: float | None = None,
    ) -> Any:
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def parameters(self) -> list[Parameter]:
        return []

    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description from which :meth:`from_config` rebuilds it."""
        return {"type": type(self).__name__}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend | None = None) -> Layer:
        """A new layer of this class from :meth:`config`, on ``backend``.

        The base version suits a parameter-free layer without arguments (``cls()``); layers
        with arguments or parameters override it (:class:`~arrayprop.nn.Dense`: freshly
        initialised weights).
        """
        layer = cls()
        layer.backend = backend
        return layer

    def to(self, backend: Backend) -> Layer:
        """A copy of this layer on ``backend`` (weights copied through the host)."""
        return type(self).from_config(self.config(), backend=backend)

    def clear_cache(self) -> None:
        """Drop what ``forward`` kept for ``backward`` (inference needs none of it)."""

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def _backend_for(self, x: Any) -> Backend:
        """The backend of a parameter-free layer: set by Sequential, or taken from the input."""
        be = self.backend
        if be is None or not isinstance(x, be.array_type):
            be = backend_of(x, dtype=x.dtype if _is_float_array(x) else None)
            self.backend = be
        return be


def _is_float_array(x: Any) -> bool:
    return "float" in str(getattr(x, "dtype", ""))


def check_grad(layer: Layer, grad_out: Any, like: Any) -> None:
    """∂C/∂output must be an array of the forward pass's backend, device and dtype.

    Raises
    ------
    BackendMismatchError
        When ``grad_out`` lives on another library or device than ``layer.backend``.
    DTypeError
        When its dtype differs from ``like.dtype`` (what the forward pass produced or kept).
    """
    be = layer.backend
    if be is not None and not be.owns(grad_out):
        be.check(grad_out, f"{layer!r} gradient")
    if getattr(grad_out, "dtype", None) != like.dtype:
        raise DTypeError(
            f"{layer!r}: expected a gradient of dtype {like.dtype}, got "
            f"{getattr(grad_out, 'dtype', type(grad_out).__name__)}"
        )


def check_2d(layer: Layer, x: Any, width: int | None, what: str) -> None:
    """``x`` must have shape (batch, width), or (batch, features) for ``width=None``.

    Raises
    ------
    ShapeError
        Naming ``layer`` and ``what`` (``"input"``, ``"gradient"``).
    """
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2 or (width is not None and shape[1] != width):
        expected = f"(batch, {width})" if width is not None else "(batch, features)"
        raise ShapeError(f"{layer!r}: expected {what} of shape {expected}, got {shape}")
