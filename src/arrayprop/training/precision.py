"""Reduced-precision training: opt-in TF32 GEMMs and mixed precision with float32 masters.

TF32 (:func:`enable_tf32`, :func:`tf32`): on NVIDIA GPUs from Ampere on, float32 GEMMs may run
on tensor cores with 10-bit mantissa inputs and float32 accumulation, several times faster.
It is off by default in arrayprop, as in PyTorch. The switches are the libraries' own, flipped
by the backend adapters (``Backend.set_tf32``): for CuPy the ``CUPY_TF32`` environment
variable, which CuPy reads at its first float32 GEMM, so set ``CUPY_TF32=1`` before the process
starts to be sure (:func:`enable_tf32` also flips CuPy's cached setting, through a private CuPy
function, when a GEMM already ran); for PyTorch its CUDA matmul ``fp32_precision`` setting
(``allow_tf32`` on older versions), flipped in backends/torch. See docs/gpu.md.

Mixed precision (:class:`MixedPrecision`): the model keeps float32 (or float64) *master*
weights; each step casts them to ``compute_dtype`` (bfloat16 or float16) into a twin model,
runs the forward and backward passes there, computes the loss and its gradient in the master
dtype from the up-cast predictions, casts the weight gradients back up and lets the optimizer
update the masters. float16 overflows easily (max 65504) and its small gradients underflow, so
it uses *dynamic loss scaling*: the loss gradient is multiplied by a scale S before the
backward pass and the weight gradients divided by S after it; a step whose gradients contain an
inf or NaN is skipped and S halved, and S doubles after ``growth_interval`` good steps. The
decision is taken on the device with ``where``: no host synchronisation per step.

Backends: bfloat16 needs PyTorch or JAX (NumPy and CuPy have no bfloat16); float16 works on
NumPy, CuPy and PyTorch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from arrayprop.backends import ADAPTERS, Backend
from arrayprop.errors import BackendUnavailableError, DTypeError
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss
from arrayprop.optim.optimizer import Optimizer

__all__ = ["MixedPrecision", "enable_tf32", "tf32"]


# --------------------------------------------------------------------------- TF32


def _tf32_adapter(backend: str | Backend) -> type[Backend]:
    """The adapter class whose library switch TF32 is (by name: no device is needed)."""
    name = backend.name if isinstance(backend, Backend) else str(backend).strip().lower()
    cls = ADAPTERS.get(name)
    if cls is None or not cls.supports_tf32:
        capable = " and ".join(repr(n) for n, c in ADAPTERS.items() if c.supports_tf32)
        raise BackendUnavailableError(
            f"TF32 is a CUDA tensor-core mode of the {capable} backends, not of {name!r}"
        )
    return cls


def enable_tf32(backend: str | Backend, enabled: bool = True) -> bool:
    """Let float32 GEMMs on ``backend`` ("cupy" or "torch") use TF32 tensor cores.

    ``enabled=False`` forbids it again. Returns whether TF32 was on before. The setting is
    process-wide, like the libraries' own switches; :func:`tf32` restores it afterwards.
    """
    return _tf32_adapter(backend).set_tf32(enabled)


@contextlib.contextmanager
def tf32(backend: str | Backend, enabled: bool = True) -> Iterator[None]:
    """Within the block TF32 is ``enabled`` on ``backend``; the exact previous setting after."""
    cls = _tf32_adapter(backend)
    previous = cls.tf32_setting()
    cls.set_tf32(enabled)
    try:
        yield
    finally:
        cls.restore_tf32(previous)


# --------------------------------------------------------------------------- mixed precision

_COMPUTE_DTYPES = ("bfloat16", "float16")


class MixedPrecision:
    """Training steps with the forward/backward in ``compute_dtype`` and float32 master weights.

    Parameters
    ----------
    model : Layer
        The model holding the master weights (float32 or float64); ``optimizer`` updates them.
    loss : Loss
        Evaluated in the master dtype on the up-cast predictions.
    optimizer : Optimizer
        Built on ``model.parameters()``.
    compute_dtype : {"bfloat16", "float16"}
        The dtype of the forward and backward passes.
    loss_scale : "auto", "dynamic", float or None
        ``"auto"`` (default): dynamic for float16, none for bfloat16 (its range is float32's).
        ``"dynamic"``: start at ``init_scale``, halve and skip the step when a gradient is not
        finite, double after ``growth_interval`` finite steps. A float: a fixed scale, never
        skipping. None: no scaling.
    init_scale, growth_factor, backoff_factor, growth_interval
        Dynamic scaling constants (PyTorch's GradScaler defaults).

    Attributes
    ----------
    scale : array, shape ()
        The current loss scale, on the device (float32).
    finite : array of bool, shape () or None
        Whether the last step's gradients were all finite (i.e. the step was applied), on the
        device; None before the first step or without dynamic scaling.

    Each step allocates a low-precision copy of the weights; with dynamic scaling it also
    copies the master weights and optimizer state once, to restore them if the step is skipped.
    The optimizer's ``steps`` counter counts skipped steps too (knowing which were skipped would
    need a host synchronisation).
    """

    def __init__(
        self,
        model: Layer,
        loss: Loss,
        optimizer: Optimizer,
        compute_dtype: str = "bfloat16",
        loss_scale: str | float | None = "auto",
        *,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        be = model.backend
        if be is None or be.dtype_name not in ("float32", "float64"):
            raise DTypeError(
                f"MixedPrecision: the master weights must be float32 or float64, got "
                f"{None if be is None else be.dtype_name}"
            )
        if compute_dtype not in _COMPUTE_DTYPES:
            raise ValueError(
                f"MixedPrecision: compute_dtype must be one of {_COMPUTE_DTYPES}, got "
                f"{compute_dtype!r}"
            )
        if loss_scale == "auto":
            loss_scale = "dynamic" if compute_dtype == "float16" else None
        if not (loss_scale in (None, "dynamic") or _positive(loss_scale)):
            raise ValueError(
                "MixedPrecision: loss_scale must be 'auto', 'dynamic', a positive number or "
                f"None, got {loss_scale!r}"
            )
        if not (growth_factor > 1 and 0 < backoff_factor < 1 and growth_interval >= 1):
            raise ValueError(
                "MixedPrecision: need growth_factor > 1, 0 < backoff_factor < 1 and "
                f"growth_interval >= 1, got {growth_factor}, {backoff_factor}, {growth_interval}"
            )
        self.model, self.loss, self.optimizer, self.backend = model, loss, optimizer, be
        self.low_backend = be.with_dtype(compute_dtype)  # DTypeError if the library lacks it
        self.compute_dtype = self.low_backend.dtype
        self.low = model.to(self.low_backend)  # the twin the passes run in
        self.dynamic = loss_scale == "dynamic"
        self.scaled = loss_scale is not None
        first = init_scale if self.dynamic else (1.0 if loss_scale is None else loss_scale)
        self.scale = be.scalar(float(first))
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self._good = be.zeros((), dtype=be.xp.int32)  # finite steps since the last change
        self.finite = None

    def __repr__(self) -> str:
        scaling = "dynamic" if self.dynamic else ("static" if self.scaled else "none")
        return f"MixedPrecision({self.low_backend.dtype_name}, loss scaling {scaling})"

    def value_and_grads(self, x: Any, y: Any) -> tuple[Any, list[Any]]:
        """The loss and the unscaled master-dtype gradients of every parameter; no update.

        x : (batch, in_features) in any float dtype (cast to ``compute_dtype``); returns the
        loss (0-d, master dtype) and one gradient per ``model.parameters()`` entry.
        """
        with self._overflow_expected():
            return self._value_and_grads(x, y)

    def _overflow_expected(self):
        # A scaled loss may overflow float16 on purpose; that is what the scaling detects.
        return self.backend.expect_overflow() if self.scaled else contextlib.nullcontext()

    def _value_and_grads(self, x: Any, y: Any) -> tuple[Any, list[Any]]:
        be, xp = self.backend, self.backend.xp
        for low, master in zip(self.low.parameters(), self.model.parameters(), strict=True):
            low.data = xp.astype(master.data, self.compute_dtype)
        x = x if be.owns(x) else be.asarray(x)
        pred = self.low.forward(xp.astype(x, self.compute_dtype))
        value, grad = self.loss.value_and_grad(xp.astype(pred, be.dtype), y)
        if self.scaled:
            grad = grad * self.scale  # C·S: small gradients stay representable in float16
        self.low.backward(xp.astype(grad, self.compute_dtype), inplace=True, input_grad=False)
        grads = [xp.astype(p.grad, be.dtype) for p in self.low.parameters()]
        if self.scaled:
            grads = [g / self.scale for g in grads]
        return value, grads

    def step(self, x: Any, y: Any) -> Any:
        """One mixed-precision training step; returns the loss (0-d device array, master dtype)."""
        with self._overflow_expected():
            value, grads = self._value_and_grads(x, y)
            for p, g in zip(self.model.parameters(), grads, strict=True):
                p.grad = g
            if not self.dynamic:
                self.optimizer.step()
                return value
            xp = self.backend.xp
            finite = xp.all(xp.isfinite(grads[0]))
            for g in grads[1:]:
                finite = xp.logical_and(finite, xp.all(xp.isfinite(g)))
            self._guarded_step(finite)
            self._update_scale(finite)
        self.finite = finite
        return value

    def _guarded_step(self, finite: Any) -> None:
        """optimizer.step(), undone where ``finite`` is False (selected on the device)."""
        be, xp, opt = self.backend, self.backend.xp, self.optimizer
        # Copies, because the fast kernels update weights and state in place.
        old_w = [xp.asarray(p.data, copy=True) for p in opt.params]
        old_state = [
            {k: xp.asarray(v, copy=True) for k, v in s.items() if isinstance(v, be.array_type)}
            for s in opt.state
        ]
        opt.step()
        for p, w0 in zip(opt.params, old_w, strict=True):
            p.data = xp.where(finite, p.data, w0)
        for state, old in zip(opt.state, old_state, strict=True):
            for key, v in state.items():
                if isinstance(v, be.array_type):
                    # State created by this very step (first momentum) starts from zeros.
                    v0 = old.get(key)
                    state[key] = xp.where(finite, v, xp.zeros_like(v) if v0 is None else v0)

    def _update_scale(self, finite: Any) -> None:
        xp = self.backend.xp
        good = xp.where(finite, self._good + 1, xp.zeros_like(self._good))
        grow = good >= self.growth_interval
        grown = xp.where(grow, self.scale * self.growth_factor, self.scale)
        self.scale = xp.where(finite, grown, self.scale * self.backoff_factor)
        self._good = xp.where(grow, xp.zeros_like(good), good)


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0 and not isinstance(value, bool | str)
    except (TypeError, ValueError):
        return False
