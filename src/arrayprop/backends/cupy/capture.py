"""CuPy stream capture for :class:`~arrayprop.CudaGraphStep` (see docs/gpu.md).

:meth:`CupyBackend.graph_capture <arrayprop.backends.cupy.CupyBackend.graph_capture>` returns a
:class:`CupyCapture`: a private non-blocking stream and memory pool, and a cuBLAS GEMM bound to
that stream (:class:`~arrayprop.backends.cupy.cublas.CublasGemm`). Warm-up steps and the capture
run on the private stream, so the graph's intermediates live in a pool nothing else allocates
from; events order that stream after the caller's current stream and back.

The interface CudaGraphStep relies on (a test stand-in implements the same): ``side_stream()``,
``capture(fn) -> graph``, ``launch(graph)``, ``copy(dst, src)`` and ``ptr(x) -> int``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import cupy

from arrayprop.backends.cupy import kernels as cupy_fast
from arrayprop.backends.cupy.cublas import CublasGemm

__all__ = ["CupyCapture"]


class CupyCapture:
    """CuPy's side of :class:`~arrayprop.CudaGraphStep`: capture stream, private pool, GEMM.

    Parameters
    ----------
    backend : CupyBackend
        The backend whose device the stream, pool and cuBLAS handle are made on.
    """

    def __init__(self, backend: Any) -> None:
        self.device = backend.device
        with self.device:
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.pool = cupy.cuda.MemoryPool()
            self.gemm = CublasGemm(self.stream)

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        """Run the block on the capture stream, pool and GEMM, ordered after and before the
        caller's current stream."""
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
        """Replay ``graph`` on the current stream."""
        graph.launch()

    def copy(self, dst: Any, src: Any) -> None:
        """Copy ``src`` into the static buffer ``dst`` (same shape), on the device."""
        cupy.copyto(dst, src)

    def ptr(self, x: Any) -> int:
        """The device address of ``x``'s data (tells a replaced array from an updated one)."""
        return x.data.ptr
