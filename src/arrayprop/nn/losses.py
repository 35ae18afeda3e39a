"""Losses: each gives the value C and ∂C/∂pred for a whole mini-batch.

Call ``loss(pred, target)`` for the value (a 0-d array on the backend; no host sync), then
``loss.backward()`` for ∂C/∂pred; or ``loss.value_and_grad(pred, target)`` for both at once.
Every built-in loss takes ``sample_weight=`` (one weight per sample): a weight of 2 counts the
sample twice (eq. 15a). Array API standard only. Equation numbers refer to docs/math.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, ClassVar

from arrayprop import kernels
from arrayprop.backends import Backend, backend_of
from arrayprop.errors import DataError, DTypeError, LabelError, ShapeError
from arrayprop.kernels import portable
from arrayprop.registry import resolve
from arrayprop.validation import (
    Interval,
    Options,
    check,
    check_class_labels,
    check_target_rows,
)

__all__ = [
    "BCE_EPS",
    "LOSSES",
    "MSE",
    "REDUCTIONS",
    "RMSE",
    "BinaryCrossEntropy",
    "L2Loss",
    "Loss",
    "SoftmaxCrossEntropy",
    "get_loss",
    "targets_checked",
]

#: How :class:`L2Loss` reduces over the batch.
REDUCTIONS = Options(("sum", "mean"))
#: The clip of :class:`BinaryCrossEntropy` on probabilities, p in [eps, 1 − eps]: below 1/2,
#: or the interval is empty.
BCE_EPS = Interval(float, 0, 0.5, closed="neither")


#: True while the targets a loss sees were checked once, as a whole data set (fit, evaluate).
_CHECKED: ContextVar[bool] = ContextVar("arrayprop_targets_checked", default=False)


@contextlib.contextmanager
def targets_checked() -> Iterator[None]:
    """Within the block, losses skip the per-batch checks of target values (rows of
    probabilities), which read the targets back: :func:`~arrayprop.fit` and
    :func:`~arrayprop.evaluate` checked the whole data set once, before the first step, and a
    step reads nothing from the device."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


class Loss:
    """Base class: subclasses implement :meth:`value_and_grad`.

    A subclass that takes per-sample weights accepts ``sample_weight=None`` in
    :meth:`value_and_grad` and sets :attr:`takes_sample_weight` (every built-in loss does);
    :func:`arrayprop.fit` refuses ``sample_weight=`` for a loss that does not.
    """

    _last_backend: Backend | None = None
    #: Whether :meth:`value_and_grad` takes ``sample_weight=``.
    takes_sample_weight: ClassVar[bool] = False

    def __init__(self) -> None:
        self._grad = None

    def __call__(self, pred: Any, target: Any, sample_weight: Any = None) -> Any:
        if sample_weight is None:
            value, self._grad = self.value_and_grad(pred, target)
        else:
            value, self._grad = self.value_and_grad(pred, target, sample_weight=sample_weight)
        return value

    def backward(self) -> Any:
        """∂C/∂pred of the last call, same shape as ``pred``."""
        if self._grad is None:
            raise RuntimeError(f"{self!r}: backward called before the loss was evaluated")
        grad, self._grad = self._grad, None
        return grad

    def value_and_grad(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """(C as a 0-d array, ∂C/∂pred of ``pred``'s shape).

        The built-in losses also take ``sample_weight`` : array, shape (batch,), optional:
        non-negative weights w; each sample's term is multiplied by its weight and a mean over
        samples becomes Σ w_i C_i / Σ w_i (eq. 15a), so that a weight of 2 equals the sample
        twice. A batch whose weights are all 0 has C = 0 and a zero gradient.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__}

    # -- shared input checks ------------------------------------------------------------------
    def _backend(self, pred: Any) -> Backend:
        be = self._last_backend
        # Same library, device and dtype as the last call (every step of a training loop):
        # skip the lookup, which costs as much as the loss itself on a tiny batch.
        if be is not None and type(pred) is be.array_type and pred.dtype == be.dtype:
            if be.owns(pred) and _size(pred):
                return be
        dtype = getattr(pred, "dtype", None)
        be = backend_of(pred, dtype=dtype if "float" in str(dtype) else None)
        if "float" not in str(dtype):
            raise DTypeError(f"{self!r}: predictions must be floating point, got {dtype}")
        if pred.ndim == 0:
            raise ShapeError(f"{self!r}: predictions must have a batch axis, got a 0-d array")
        if _size(pred) == 0:
            # A mean over no samples is 0/0: refuse it rather than return NaN with a warning.
            raise DataError(f"{self!r}: got an empty batch (predictions of shape {pred.shape})")
        self._last_backend = be
        return be

    def _float_target(self, be: Backend, pred: Any, target: Any) -> Any:
        """A float target of pred's shape and dtype, on pred's backend (host data is moved)."""
        target = be.asarray(target, dtype=pred.dtype)
        if tuple(target.shape) != tuple(pred.shape):
            if target.shape == (pred.shape[0],) and pred.ndim == 2 and pred.shape[1] == 1:
                target = be.xp.reshape(target, (-1, 1))
            else:
                raise ShapeError(
                    f"{self!r}: target shape {tuple(target.shape)} does not match prediction "
                    f"shape {tuple(pred.shape)}"
                )
        return target

    def _weights(self, be: Backend, pred: Any, sample_weight: Any) -> tuple[Any, Any]:
        """(w, W): the weights as a column broadcasting against ``pred`` (n, 1, ..., 1) and
        their sum W (a 0-d array; 1 where it is 0, so that an all-zero batch gives 0, not NaN).
        O(1) checks only: fit checks the values (finite, non-negative) once."""
        xp = be.xp
        w = be.asarray(sample_weight, dtype=pred.dtype)
        if tuple(w.shape) != (pred.shape[0],):
            raise ShapeError(
                f"{self!r}: sample_weight must have shape ({pred.shape[0]},), one weight per "
                f"sample, got {tuple(w.shape)}"
            )
        total = xp.sum(w)
        total = xp.where(total > 0, total, xp.ones_like(total))
        return xp.reshape(w, (-1,) + (1,) * (pred.ndim - 1)), total


class L2Loss(Loss):
    """C = ½ Σ (y − t)² (``reduction="sum"``, the classic quadratic cost) or that divided by the
    batch size (``reduction="mean"``).  ∂C/∂y = (y − t) [/ N]  (eq. 11).
    """

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.reduction = check("L2Loss", "reduction", reduction, REDUCTIONS)

    def __repr__(self) -> str:
        return f"L2Loss(reduction={self.reduction!r})"

    def config(self) -> dict[str, Any]:
        return {"type": "L2Loss", "reduction": self.reduction}

    takes_sample_weight = True

    def value_and_grad(self, pred: Any, target: Any, sample_weight: Any = None) -> tuple[Any, Any]:
        be = self._backend(pred)
        t = self._float_target(be, pred, target)
        diff = pred - t
        if sample_weight is not None:
            w, total = self._weights(be, pred, sample_weight)
            value = 0.5 * be.xp.sum(w * diff * diff)  # eq. 15a
            if self.reduction == "mean":
                return _scalar(be, value / total), (w / total) * diff  # eq. 15a
            return _scalar(be, value), w * diff  # eq. 15a
        value = 0.5 * be.xp.sum(diff * diff)
        if self.reduction == "mean":
            n = pred.shape[0]
            return _scalar(be, value / n), diff / n  # eq. 11
        return _scalar(be, value), diff  # eq. 11


class MSE(Loss):
    """C = (1/M) Σ (y − t)² over all M elements; ∂C/∂y = 2 (y − t) / M  (eq. 12)."""

    takes_sample_weight = True

    def value_and_grad(self, pred: Any, target: Any, sample_weight: Any = None) -> tuple[Any, Any]:
        be = self._backend(pred)
        t = self._float_target(be, pred, target)
        diff = pred - t
        if sample_weight is not None:
            w, total = self._weights(be, pred, sample_weight)
            scale = w / (total * _per_sample(pred))  # eq. 15a
            return _scalar(be, be.xp.sum(scale * diff * diff)), (2.0 * scale) * diff  # eq. 15a
        m = _size(pred)
        return _scalar(be, be.xp.sum(diff * diff) / m), diff * (2.0 / m)  # eq. 12


class RMSE(Loss):
    """C = √MSE; ∂C/∂y = (y − t) / (M · C)  (zero where C = 0; eq. 13)."""

    takes_sample_weight = True

    def value_and_grad(self, pred: Any, target: Any, sample_weight: Any = None) -> tuple[Any, Any]:
        be = self._backend(pred)
        xp = be.xp
        t = self._float_target(be, pred, target)
        diff = pred - t
        if sample_weight is None:
            m = _size(pred)
            value = xp.sqrt(xp.sum(diff * diff) / m)
            # Guard C = 0 without a host sync: divide by max(C, tiny); the numerator is 0 there.
            denom = xp.maximum(value, xp.finfo(pred.dtype).smallest_normal) * m
            return _scalar(be, value), diff / denom  # eq. 13
        w, total = self._weights(be, pred, sample_weight)
        scale = w / (total * _per_sample(pred))  # eq. 15a
        value = xp.sqrt(xp.sum(scale * diff * diff))  # eq. 15a
        denom = xp.maximum(value, xp.finfo(pred.dtype).smallest_normal)
        return _scalar(be, value), (scale / denom) * diff  # eq. 15a


class BinaryCrossEntropy(Loss):
    """C = −(1/M) Σ [t log p + (1 − t) log(1 − p)] over all M elements, targets t in [0, 1].

    ``from_logits=False``: ``pred`` are probabilities p (clipped to [eps, 1 − eps]);
    ∂C/∂p = (p − t) / (p (1 − p) M)  (eq. 14).
    ``from_logits=True``: ``pred`` are logits z, p = σ(z), evaluated stably as
    C = (1/M) Σ [max(z, 0) − z t + log(1 + e^{−|z|})]; ∂C/∂z = (σ(z) − t) / M  (eq. 15).
    """

    def __init__(self, from_logits: bool = False, eps: float | None = None) -> None:
        super().__init__()
        self.from_logits = bool(from_logits)
        self.eps = None if eps is None else check("BinaryCrossEntropy", "eps", eps, BCE_EPS)

    def __repr__(self) -> str:
        return f"BinaryCrossEntropy(from_logits={self.from_logits})"

    def config(self) -> dict[str, Any]:
        return {"type": "BinaryCrossEntropy", "from_logits": self.from_logits}

    takes_sample_weight = True

    def value_and_grad(self, pred: Any, target: Any, sample_weight: Any = None) -> tuple[Any, Any]:
        be = self._backend(pred)
        xp = be.xp
        t = self._float_target(be, pred, target)
        # As for class labels, the range check reads the targets back only where that is free.
        if be.on_host:
            host = be.to_host(t)
            if host.size and not (host.min() >= 0.0 and host.max() <= 1.0):
                bad = host.min() if not host.min() >= 0.0 else host.max()
                raise LabelError(f"{self!r}: target {float(bad)} is outside [0, 1]")
        if sample_weight is None:
            m = _size(pred)
            if self.from_logits:
                z = pred
                terms = xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))
                value = xp.sum(terms) / m  # eq. 15
                return _scalar(be, value), (portable.sigmoid(xp, z) - t) / m  # eq. 15
            eps = self.eps if self.eps is not None else float(xp.finfo(pred.dtype).eps)
            p = xp.clip(pred, eps, 1.0 - eps)
            value = -xp.sum(t * xp.log(p) + (1.0 - t) * xp.log1p(-p)) / m  # eq. 14
            return _scalar(be, value), (p - t) / (p * (1.0 - p) * m)  # eq. 14
        w, total = self._weights(be, pred, sample_weight)
        scale = w / (total * _per_sample(pred))  # eq. 15a
        if self.from_logits:
            z = pred
            terms = xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))
            return _scalar(be, xp.sum(scale * terms)), scale * (portable.sigmoid(xp, z) - t)
        eps = self.eps if self.eps is not None else float(xp.finfo(pred.dtype).eps)
        p = xp.clip(pred, eps, 1.0 - eps)
        value = -xp.sum(scale * (t * xp.log(p) + (1.0 - t) * xp.log1p(-p)))  # eq. 15a
        return _scalar(be, value), scale * (p - t) / (p * (1.0 - p))  # eq. 15a


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused, on logits Z (batch, classes).

    C = −(1/N) Σ_n Σ_k Y_nk log softmax(Z)_nk, with log softmax = Z − max − log Σ e^{Z − max}
    (log-sum-exp: finite for any logits).  The fused gradient is ∂C/∂Z = (softmax(Z) − Y) / N
    (eq. 8). ``target`` is integer labels of shape (batch,) or one-hot / probability rows of
    shape (batch, classes), each row a probability distribution (entries >= 0 summing to 1;
    checked per batch where that costs no device sync, else once by ``fit`` / ``evaluate``).
    Logits of one class are refused: their softmax is 1, so the loss would be 0 whatever the
    model does.
    """

    takes_sample_weight = True

    @staticmethod
    def one_output_message() -> str:
        return (
            "SoftmaxCrossEntropy(): the model has 1 output, whose softmax is always 1 (loss 0, "
            "nothing to learn); softmax cross-entropy needs >= 2 classes: for two classes use "
            "2 outputs, or 1 output with BinaryCrossEntropy(from_logits=True)"
        )

    def value_and_grad(
        self, logits: Any, target: Any, sample_weight: Any = None
    ) -> tuple[Any, Any]:
        be = self._backend(logits)
        if logits.ndim != 2:
            raise ShapeError(
                f"SoftmaxCrossEntropy(): logits must have shape (batch, classes), got "
                f"{tuple(logits.shape)}"
            )
        n, k = logits.shape
        if k == 1:
            raise ShapeError(self.one_output_message())
        labels = self.labels(be, target, n, k)
        if sample_weight is not None:
            return self._weighted(be, logits, labels, target, sample_weight)
        if labels is not None:
            value, grad = kernels.softmax_cross_entropy_labels(be, logits, labels)  # eq. 8
        else:
            y = self.targets(be, target, n, k, logits.dtype)
            value, grad = kernels.softmax_cross_entropy(be, logits, y)  # eq. 8
        return _scalar(be, value), grad

    def _weighted(
        self, be: Backend, z: Any, labels: Any, target: Any, sample_weight: Any
    ) -> tuple[Any, Any]:
        """Eq. 8 with per-sample weights (eq. 15a): C = −Σ_n w_n Σ_k Y_nk log softmax(Z)_nk / W,
        ∂C/∂Z = w_n (softmax(Z) − Y) / W."""
        xp = be.xp
        n, k = z.shape
        if labels is not None:
            classes = xp.arange(k, dtype=labels.dtype, device=be.device)
            y = xp.astype(labels[:, None] == classes, z.dtype)
        else:
            y = self.targets(be, target, n, k, z.dtype)
        w, total = self._weights(be, z, sample_weight)
        shifted = z - xp.max(z, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        value = -xp.sum(w * y * (shifted - xp.log(s))) / total  # eq. 15a
        return _scalar(be, value), (w / total) * (e / s - y)  # eq. 15a

    @staticmethod
    def labels(be: Backend, target: Any, n: int, k: int) -> Any:
        """Validated integer labels (n,) on the backend, or None for target rows."""
        t = be.asarray(target)
        if t.ndim != 1:
            return None
        xp = be.xp
        if xp.isdtype(t.dtype, "real floating") or t.dtype == xp.bool:
            raise LabelError(
                f"SoftmaxCrossEntropy(): labels of shape ({n},) must be integers, got {t.dtype}"
            )
        if t.shape[0] != n:
            raise ShapeError(f"SoftmaxCrossEntropy(): {t.shape[0]} labels for {n} logits rows")
        # On a GPU this check would cost a device sync per step; there, fit() checks all
        # labels once before training instead. On the host the host twin is the cheap one (a
        # min and a max; the device twin's Array API calls cost ~10x more per step).
        if be.on_host:
            check_class_labels(be.to_host(t), k, "SoftmaxCrossEntropy()")
        return t

    @staticmethod
    def targets(be: Backend, target: Any, n: int, k: int, dtype: Any) -> Any:
        """Target rows Y (n, k) (one-hot or probabilities) as float ``dtype`` on the backend."""
        xp = be.xp
        t = be.asarray(target)
        if tuple(t.shape) != (n, k):
            raise ShapeError(
                f"SoftmaxCrossEntropy(): target shape {tuple(t.shape)} does not match logits "
                f"shape {(n, k)}; pass labels (batch,) or one-hot rows (batch, classes)"
            )
        # As for labels: checked per batch only where reading the rows back is free, and
        # not again for data fit or evaluate checked as a whole.
        if be.on_host and not _CHECKED.get():
            check_target_rows(be.to_host(t), "SoftmaxCrossEntropy()")
        if not xp.isdtype(t.dtype, "real floating"):
            return xp.astype(t, dtype)
        return t if t.dtype == dtype else xp.astype(t, dtype)


def _scalar(be: Backend, value: Any) -> Any:
    """The loss value as a 0-d array of the backend: NumPy reductions return NumPy scalars."""
    return be.xp.asarray(value)


def _per_sample(x: Any) -> int:
    """Elements per sample of ``x`` (n, ...): a mean over all elements is a mean over samples of
    the mean over each sample's elements."""
    return _size(x) // x.shape[0] if x.shape[0] else 1


def _size(x: Any) -> int:
    m = 1
    for d in x.shape:
        m *= d
    return m


LOSSES: dict[str, type[Loss]] = {
    "softmax-ce": SoftmaxCrossEntropy,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "bce": BinaryCrossEntropy,
    "mse": MSE,
    "rmse": RMSE,
    "l2": L2Loss,
}


def get_loss(name: str | Loss) -> Loss:
    """A loss from its name, with default arguments, or a :class:`Loss` passed through.

    Parameters
    ----------
    name : str or Loss
        A key of :data:`LOSSES`, case-insensitive: ``softmax-ce`` (alias
        ``softmax_cross_entropy``), ``bce``, ``mse``, ``rmse``, ``l2``.

    Returns
    -------
    Loss
        A new instance, or ``name`` itself if it already is one.

    Raises
    ------
    ValueError
        For any other name; the message lists the valid ones.
    """
    return resolve(LOSSES, name, "loss", Loss)
