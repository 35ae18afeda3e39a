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
- CuPy refuses cuBLAS calls on a capturing stream (cupy/cupy#6290), so during warm-up and
  capture the GEMMs go to cuBLAS directly, through ctypes, on a handle bound to the capture
  stream with its own workspace (``_CublasGemm``); eager steps keep using ``cupy.matmul``.
- Warm-up and capture run on a private non-blocking stream with a private memory pool: the
  graph's intermediates live in that pool, which nothing else allocates from, so no other array
  can be handed a block the graph still writes. Events order the private stream after the
  caller's current stream and back; replays run on the caller's current stream.
- Capture can fail (a host synchronisation inside the step, an optimizer that is not known to
  be capturable, cuBLAS not loadable through ctypes). Then the step falls back to eager
  training silently, without a warning: :attr:`CudaGraphStep.captured` is False and
  :attr:`CudaGraphStep.reason` says why. Pass ``strict=True`` to raise instead.

Only CuPy is supported; on any other backend the constructor raises
:class:`~arrayprop.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from arrayprop.errors import BackendUnavailableError, DTypeError, ShapeError
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.sgd import SGD
from arrayprop.training.api import train_step

__all__ = ["CudaGraphStep"]

# cuBLAS / CUDA enum values (cublas_api.h, library_types.h).
_OP_N, _OP_T = 0, 1
_CUDA_R = {"float32": 0, "float64": 1, "float16": 2}
_COMPUTE_32F, _COMPUTE_64F, _COMPUTE_32F_FAST_TF32 = 68, 70, 77
_GEMM_DEFAULT = -1
# NVIDIA recommends 32 MiB of cuBLAS workspace on Hopper; with a workspace of its own, cuBLAS
# never allocates while a stream is capturing.
_WORKSPACE_BYTES = 32 * 1024 * 1024

#: Optimizer classes whose ``step()`` reads no per-step host value (Adam's bias correction
#: 1 − β₁ᵗ would be frozen into the graph). Others may opt in with ``capturable = True``.
_CAPTURABLE_OPTIMIZERS = (SGD,)


def _check_cublas(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def _load_cublas() -> ctypes.CDLL:
    """The libcublas that CuPy itself uses, opened through ctypes."""
    import cupy

    # A GEMM makes CuPy load its cuBLAS into the process; opening the same soname (or the same
    # mapped file) then returns that library instead of a second copy.
    one = cupy.ones((1, 1), dtype=cupy.float32)
    cupy.matmul(one, one)
    major = cupy.cuda.runtime.runtimeGetVersion() // 1000
    candidates = [f"libcublas.so.{major}"]
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libcublas.so") and path not in candidates:
                candidates.append(path)
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError(f"cannot open cuBLAS through ctypes (tried {', '.join(candidates)})")


def _cupy_uses_tf32() -> bool:
    """Whether CuPy runs float32 GEMMs with TF32 (CUPY_TF32=1), so the capture GEMM agrees."""
    import numpy

    try:
        from cupy._core import _routines_linalg as linalg

        return linalg.get_compute_type(numpy.float32) == linalg.COMPUTE_TYPE_TF32
    except (ImportError, AttributeError):
        return os.environ.get("CUPY_TF32", "0") not in ("", "0")


class _CublasGemm:
    """C = A B on cuBLAS through ctypes, on one stream: legal while that stream captures.

    ``a`` (m, k) and ``b`` (k, n) are 2-D CuPy arrays of one float dtype; C-contiguous and
    F-contiguous operands (``x.T`` views) are used as they are, anything else is copied.
    """

    def __init__(self, stream: Any) -> None:
        import cupy

        lib = _load_cublas()
        vp, i = ctypes.c_void_p, ctypes.c_int
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasDestroy_v2.argtypes = [vp]
        # handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype,
        # ldc, computeType, algo
        lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
        for f in (lib.cublasCreate_v2, lib.cublasSetStream_v2, lib.cublasGemmEx):
            f.restype = i
        handle = vp()
        _check_cublas(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self._lib, self._handle = lib, handle
        _check_cublas(lib.cublasSetStream_v2(handle, stream.ptr), "cublasSetStream")
        self._workspace = cupy.empty(_WORKSPACE_BYTES, dtype=cupy.uint8)
        if hasattr(lib, "cublasSetWorkspace_v2"):
            lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
            lib.cublasSetWorkspace_v2.restype = i
            status = lib.cublasSetWorkspace_v2(handle, self._workspace.data.ptr, _WORKSPACE_BYTES)
            _check_cublas(status, "cublasSetWorkspace")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._lib.cublasDestroy_v2(self._handle)

    @staticmethod
    def _operand(x: Any) -> tuple[Any, int, int]:
        """(array, op, ld) such that op(x's buffer read column-major) is xᵀ."""
        import cupy

        if x.flags.c_contiguous:
            return x, _OP_N, max(1, x.shape[1])
        if x.flags.f_contiguous:
            return x, _OP_T, max(1, x.shape[0])
        x = cupy.ascontiguousarray(x)
        return x, _OP_N, max(1, x.shape[1])

    def __call__(self, a: Any, b: Any) -> Any:
        import cupy

        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            raise ShapeError(
                f"capture GEMM: need (m, k) @ (k, n) of one dtype, got {a.shape} {a.dtype} @ "
                f"{b.shape} {b.dtype}"
            )
        kind = a.dtype.name
        if kind not in _CUDA_R:
            raise DTypeError(f"capture GEMM: unsupported dtype {kind}")
        (m, k), n = a.shape, b.shape[1]
        c = cupy.empty((m, n), dtype=a.dtype)
        if m == 0 or n == 0:
            return c
        if k == 0:
            c.fill(0)
            return c
        a, op_a, lda = self._operand(a)
        b, op_b, ldb = self._operand(b)
        if kind == "float64":
            alpha, beta, compute = ctypes.c_double(1.0), ctypes.c_double(0.0), _COMPUTE_64F
        else:
            alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
            tf32 = kind == "float32" and _cupy_uses_tf32()  # read per call: it can change
            compute = _COMPUTE_32F_FAST_TF32 if tf32 else _COMPUTE_32F
        t = _CUDA_R[kind]
        # Row-major C (m, n) = A B is column-major Cᵀ (n, m) = Bᵀ Aᵀ: B goes first. The host
        # scalars alpha, beta are read at call time, i.e. recorded into a graph being captured.
        status = self._lib.cublasGemmEx(
            self._handle, op_b, op_a, n, m, k,
            ctypes.addressof(alpha), b.data.ptr, t, ldb, a.data.ptr, t, lda,
            ctypes.addressof(beta), c.data.ptr, t, n, compute, _GEMM_DEFAULT,
        )  # fmt: skip
        _check_cublas(status, "cublasGemmEx")
        return c


class _CupyCapture:
    """CuPy's side of :class:`CudaGraphStep`: capture stream, private pool, capture GEMM."""

    def __init__(self, backend: Any) -> None:
        import cupy

        self._cupy = cupy
        self.device = backend.device
        with self.device:
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.pool = cupy.cuda.MemoryPool()
            self.gemm = _CublasGemm(self.stream)

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        """Run the block on the capture stream, pool and GEMM, ordered after and before the
        caller's current stream."""
        cupy = self._cupy
        from arrayprop.backends.cupy import kernels as cupy_fast

        with self.device:
            current = cupy.cuda.get_current_stream()
            self.stream.wait_event(current.record())
            try:
                with (
                    cupy.cuda.using_allocator(self.pool.malloc),
                    self.stream,
                    cupy_fast.capturable_gemm(self.gemm),
                ):
                    yield
            finally:
                current.wait_event(self.stream.record())

    def capture(self, fn: Callable[[], None]) -> Any:
        """Record ``fn``'s device work into a graph (nothing executes)."""
        with self.side_stream():
            self.stream.begin_capture()
            try:
                fn()
            except BaseException:
                # The capture is unusable; end it so the stream works again. fn's error is the
                # one worth reporting.
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            return self.stream.end_capture()

    def launch(self, graph: Any) -> None:
        graph.launch()  # on the current stream

    def copy(self, dst: Any, src: Any) -> None:
        self._cupy.copyto(dst, src)

    def ptr(self, x: Any) -> int:
        return x.data.ptr


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
        The capture mechanism; default CuPy's. Tests pass a stand-in to run on the CPU.

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
        if capture is None:
            if be is None or be.name != "cupy":
                raise BackendUnavailableError(
                    f"CudaGraphStep: CUDA graphs need the 'cupy' backend, but the model is on "
                    f"{be}; use arrayprop.train_step for eager steps on other backends"
                )
            capture = _CupyCapture(be)
        self.x_shape = _shape("x_shape", x_shape, 2)
        self.y_shape = _shape("y_shape", y_shape, None)
        if self.y_shape[0] != self.x_shape[0]:
            raise ShapeError(
                f"CudaGraphStep: y_shape {self.y_shape} must have the batch size "
                f"{self.x_shape[0]} of x_shape {self.x_shape}"
            )
        if not isinstance(warmup, int) or warmup < 0:
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
        self.reason: str | None = None
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


def _shape(name: str, shape: Sequence[int], ndim: int | None) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"CudaGraphStep: {name} must be a tuple of ints, got {shape!r}") from None
    if not out or any(d <= 0 for d in out) or (ndim is not None and len(out) != ndim):
        need = f"{ndim} positive ints" if ndim else "positive ints"
        raise ShapeError(f"CudaGraphStep: {name} must be {need}, got {shape!r}")
    return out
