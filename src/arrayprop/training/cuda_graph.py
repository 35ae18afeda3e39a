"""A whole training step replayed as one CUDA graph (CuPy backend).

A small network spends most of a step launching kernels: a forward, loss, backward and SGD
update of ``mlp([784, 128, 10])`` is a few dozen kernels of a few microseconds each, and Python
issues them one by one. :class:`CudaGraphStep` records the step once with CuPy's stream capture
and afterwards launches the recorded graph, one driver call per step.

How (docs/gpu.md has the long version):

- The graph reads fixed buffers, so each batch is first copied into static input buffers of the
  captured shapes; the loss lands in a static 0-d buffer. A batch of any other shape (the last,
  partial batch of an epoch) runs the ordinary eager :func:`~arrayprop.train_step` instead.
- Parameters and optimizer state must be updated in place, so that the next replay reads what
  the last one wrote. After capturing, the step checks that no parameter or state array was
  replaced; if one was (SGD with momentum rebinds its velocity), the graph is dropped and every
  step runs eagerly. Learning rates and other Python scalars are baked into the graph: when
  ``optimizer.lr`` or ``optimizer.hyperparameters()`` changes (a schedule), the step is
  captured again.
- The capture itself is the backend's (:meth:`Backend.graph_capture
  <arrayprop.Backend.graph_capture>`; CuPy's is :mod:`arrayprop.backends.cupy.capture`).
  CuPy refuses cuBLAS calls on a capturing stream (cupy/cupy#6290), so during warm-up and
  capture the GEMMs go to cuBLAS directly, through ctypes, on a handle bound to the capture
  stream with its own workspace (:mod:`arrayprop.backends.cupy.cublas`); eager steps keep
  using ``cupy.matmul``.
- Warm-up and capture run on a private non-blocking stream with a private memory pool: the
  graph's intermediates live in that pool, which nothing else allocates from, so no other array
  can be handed a block the graph still writes. Events order the private stream after the
  caller's current stream and back; replays run on the caller's current stream.
- Capture can fail (a host synchronisation inside the step, an optimizer that is not known to
  be capturable, cuBLAS not loadable through ctypes, which shows already when the step is
  constructed). Then the step falls back to eager training silently, without a warning:
  :attr:`CudaGraphStep.captured` is False and :attr:`CudaGraphStep.reason` says why. Pass
  ``strict=True`` to raise ``RuntimeError`` instead.

Only CuPy has a capture; on any other backend the constructor raises
:class:`~arrayprop.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from arrayprop.errors import BackendUnavailableError, DTypeError, ShapeError
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.sgd import SGD
from arrayprop.training.api import train_step

__all__ = ["CudaGraphStep"]

#: Optimizer classes whose ``step()`` reads no per-step host value (Adam's bias correction
#: 1 − β₁ᵗ would be frozen into the graph). Others may opt in with ``capturable = True``.
_CAPTURABLE_OPTIMIZERS = (SGD,)


class CudaGraphStep:
    """``train_step(model, loss, optimizer, x, y)`` for fixed shapes, replayed as a CUDA graph.

    Parameters
    ----------
    model, loss, optimizer
        As for :func:`~arrayprop.train_step`; the model lives on the ``cupy`` backend.
    x_shape : tuple of int
        The batch shape to capture, ``(batch, in_features)``.
    y_shape : tuple of int
        The target shape, e.g. ``(batch,)`` for integer labels.
    y_dtype : str or dtype, optional
        The target dtype; default ``int64`` for 1-D targets (labels), else the model's dtype.
    warmup : int
        Eager steps (on full batches) before capturing: they compile the kernels and create the
        optimizer state. Default 2.
    strict : bool
        Raise ``RuntimeError`` when capture fails instead of training eagerly.
    capture : object, optional
        The capture mechanism; default the backend's (``model.backend.graph_capture()``).
        Tests pass a stand-in to run on the CPU.

    Attributes
    ----------
    captured : bool
        Whether a graph is in use.
    reason : str or None
        Why steps run eagerly for good (capture failed), else None.
    graph_steps, eager_steps, captures : int
        Steps replayed from the graph, steps run eagerly (warm-up, odd shapes, fallback), and
        the number of captures made (more than one after hyperparameter changes).

    Calling the object runs one step and returns the loss as a 0-d device array. In graph mode
    that array is a static buffer that the next step overwrites: accumulate or copy it before
    then (``total += step(x, y)`` is fine). After replacing parameter arrays from outside
    (loading a checkpoint), call :meth:`reset`.
    """

    def __init__(
        self,
        model: Layer,
        loss: Loss,
        optimizer: Optimizer,
        x_shape: Sequence[int],
        y_shape: Sequence[int],
        y_dtype: Any = None,
        *,
        warmup: int = 2,
        strict: bool = False,
        capture: Any = None,
    ) -> None:
        be = model.backend
        unavailable = None
        if capture is None:
            if be is None:  # a model without parameters has no backend yet
                raise BackendUnavailableError(
                    "CudaGraphStep: CUDA graphs need the 'cupy' backend, but the model has none"
                )
            capture, unavailable = _open_capture(be, strict)
        self.x_shape = _shape("x_shape", x_shape, 2)
        self.y_shape = _shape("y_shape", y_shape, None)
        if self.y_shape[0] != self.x_shape[0]:
            raise ShapeError(
                f"CudaGraphStep: y_shape {self.y_shape} must have the batch size "
                f"{self.x_shape[0]} of x_shape {self.x_shape}"
            )
        if not isinstance(warmup, numbers.Integral) or isinstance(warmup, bool) or warmup < 0:
            raise ValueError(f"CudaGraphStep: warmup must be an int >= 0, got {warmup!r}")
        if y_dtype is None:
            y_dtype = be.xp.int64 if len(self.y_shape) == 1 else be.dtype
        elif isinstance(y_dtype, str):
            y_dtype = getattr(be.xp, y_dtype)
        self.model, self.loss, self.optimizer, self.backend = model, loss, optimizer, be
        self.warmup, self.strict = warmup, strict
        self._capture = capture
        # The graph's inputs and output: each step's data is copied into x, y; the loss lands
        # in loss_value.
        self.x = be.zeros(self.x_shape)
        self.y = be.zeros(self.y_shape, dtype=y_dtype)
        self.loss_value = be.zeros(())
        # Set when the capture machinery could not even be set up (cuBLAS not loadable): every
        # step then runs eagerly, as after a failed capture.
        self.reason: str | None = unavailable
        self.graph_steps = self.eager_steps = self.captures = 0
        self._graph = None
        self._warm = 0
        self._hyper: tuple[Any, dict[str, Any]] | None = None
        self._bound: list[Any] = []  # arrays the graph reads and writes: parameters, state
        self._grads: list[Any] = []  # the gradient arrays the graph writes
        self._eager_since_launch = False

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def reset(self) -> None:
        """Drop the graph and any capture failure: the next full batch captures afresh.

        Call it after replacing parameter or optimizer-state arrays from outside the step.
        """
        self._graph = None
        self.reason = None
        if self._capture is None:  # the machinery failed to set up: try again
            self._capture, self.reason = _open_capture(self.backend, self.strict)

    def __call__(self, x: Any, y: Any) -> Any:
        """One training step on (x, y); returns the loss (a 0-d device array)."""
        be = self.backend
        x = x if be.owns(x) else be.asarray(x)
        y = y if be.owns(y) else be.asarray(y)
        if tuple(x.shape) != self.x_shape or tuple(y.shape) != self.y_shape:
            return self._eager(x, y)  # e.g. the last, partial batch of an epoch
        integral = be.xp.isdtype(y.dtype, "integral")
        if x.dtype != self.x.dtype or integral != be.xp.isdtype(self.y.dtype, "integral"):
            # Targets may differ in width (int32 labels are copied into the int64 buffer).
            raise DTypeError(
                f"CudaGraphStep: captured x {self.x.dtype}, y {self.y.dtype}; got x {x.dtype}, "
                f"y {y.dtype}"
            )
        if self.reason is not None:
            return self._eager(x, y)
        if self._graph is not None and self._frozen() != self._hyper:
            self._graph = None  # a schedule changed a value the graph has frozen: capture again
        if self._graph is None:
            if self._warm < self.warmup:
                self._warm += 1
                self.eager_steps += 1
                with self._capture.side_stream():
                    return train_step(self.model, self.loss, self.optimizer, x, y)
            self._capture_graph()
            if self._graph is None:
                return self._eager(x, y)
        return self._replay(x, y)

    # -- internals --------------------------------------------------------------------------
    def _eager(self, x: Any, y: Any) -> Any:
        self.eager_steps += 1
        self._eager_since_launch = True
        return train_step(self.model, self.loss, self.optimizer, x, y)

    def _replay(self, x: Any, y: Any) -> Any:
        cap = self._capture
        if self._eager_since_launch:
            self._rebind()
        cap.copy(self.x, x)
        cap.copy(self.y, y)
        cap.launch(self._graph)
        self.optimizer.steps += 1
        self.graph_steps += 1
        return self.loss_value

    def _frozen(self) -> tuple[Any, dict[str, Any]]:
        """The optimizer's Python numbers a captured step has baked in."""
        opt = self.optimizer
        return getattr(opt, "lr", None), opt.hyperparameters()

    def _arrays(self) -> list[Any]:
        """Parameters and optimizer-state arrays, in a fixed order."""
        opt, array_type = self.optimizer, self.backend.array_type
        out = [p.data for p in opt.params]
        for state in opt.state:
            out += [v for _, v in sorted(state.items()) if isinstance(v, array_type)]
        return out

    def _capture_graph(self) -> None:
        opt = self.optimizer
        capturable = getattr(opt, "capturable", isinstance(opt, _CAPTURABLE_OPTIMIZERS))
        if not capturable:
            self._give_up(
                f"{type(opt).__name__} is not known to be capturable (its step may read a "
                "per-step host value, such as Adam's bias correction, that a graph would freeze)"
            )
            return
        params = opt.params
        saved = (
            [p.data for p in params],
            [p.grad for p in params],
            [dict(s) for s in opt.state],
            opt.steps,
        )
        before = [self._capture.ptr(a) for a in self._arrays()]

        def step() -> None:
            value = train_step(self.model, self.loss, opt, self.x, self.y)
            self._capture.copy(self.loss_value, value)

        try:
            graph = self._capture.capture(step)
        except Exception as exc:
            self._restore(saved)
            self._give_up(f"capture failed: {type(exc).__name__}: {exc}", exc)
            return
        if [self._capture.ptr(a) for a in self._arrays()] != before:
            self._restore(saved)
            self._give_up(
                "the step replaces parameter or optimizer-state arrays instead of updating them "
                "in place, so a replay would not see the previous replay's update"
            )
            return
        opt.steps = saved[3]  # the capture ran no step; each replay counts one
        self.captures += 1
        self._graph = graph
        self._hyper = self._frozen()
        self._bound = self._arrays()
        self._grads = [p.grad for p in params]
        self._eager_since_launch = False

    def _restore(self, saved: tuple) -> None:
        """Undo the Python-side effects of a failed capture (its kernels never ran)."""
        data, grads, states, steps = saved
        opt = self.optimizer
        for p, d, g in zip(opt.params, data, grads, strict=True):
            p.data, p.grad = d, g
        for state, old in zip(opt.state, states, strict=True):
            state.clear()
            state.update(old)
        opt.steps = steps

    def _give_up(self, reason: str, exc: Exception | None = None) -> None:
        self._graph = None
        if self.strict:
            raise RuntimeError(f"CudaGraphStep: {reason}") from exc
        self.reason = reason

    def _rebind(self) -> None:
        """After eager steps, point the model back at the arrays the graph reads and writes.

        Eager steps update in place on CuPy, so normally only the gradients were rebound; if a
        parameter or state array was replaced (portable kernels), its value is copied into the
        graph's buffer.
        """
        cap, opt = self._capture, self.optimizer
        current = self._arrays()
        if len(current) != len(self._bound):
            self._graph = None
            raise RuntimeError(
                "CudaGraphStep: the optimizer state changed shape since capture; call reset()"
            )
        for now, bound in zip(current, self._bound, strict=True):
            if now is not bound:
                cap.copy(bound, now)
        n = len(opt.params)
        for p, d in zip(opt.params, self._bound[:n], strict=True):
            p.data = d
        arrays, array_type = iter(self._bound[n:]), self.backend.array_type
        for state in opt.state:
            for key in sorted(k for k, v in state.items() if isinstance(v, array_type)):
                state[key] = next(arrays)
        for p, g in zip(opt.params, self._grads, strict=True):
            p.grad = g
        self._eager_since_launch = False


def _open_capture(be: Any, strict: bool) -> tuple[Any, str | None]:
    """(the backend's capture, None), or (None, why) when its machinery cannot be set up.

    A backend without CUDA graphs raises :class:`BackendUnavailableError` (a usage error, so
    it propagates); any other failure (CuPy's cuBLAS not loadable through ctypes, no handle,
    no stream) is the documented eager fallback, or ``RuntimeError`` when ``strict``.
    """
    try:
        return be.graph_capture(), None
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"CudaGraphStep: {exc}; use arrayprop.train_step for eager steps on other backends"
        ) from exc
    except Exception as exc:
        reason = f"capture unavailable: {type(exc).__name__}: {exc}"
        if strict:
            raise RuntimeError(f"CudaGraphStep: {reason}") from exc
        return None, reason


def _shape(name: str, shape: Sequence[int], ndim: int | None) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"CudaGraphStep: {name} must be a tuple of ints, got {shape!r}") from None
    if not out or any(d <= 0 for d in out) or (ndim is not None and len(out) != ndim):
        need = f"{ndim} positive ints" if ndim else "positive ints"
        raise ShapeError(f"CudaGraphStep: {name} must be {need}, got {shape!r}")
    return out
