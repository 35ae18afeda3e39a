"""NCCL all-reduce of CuPy arrays (``cupy.cuda.nccl``), bootstrapped by the caller.

:class:`NcclAllReduce` makes one NCCL communicator per process: rank 0 draws NCCL's unique id
and the caller's ``bcast`` (MPI, in :mod:`arrayprop.distributed`) hands it to every rank, as
ChainerMN does. No transport of our own: the sum runs in NCCL, on the current CUDA stream.
``nccl`` and ``stream_ptr`` are injectable so the bootstrap can be tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["NCCL_DTYPES", "NcclAllReduce"]

#: NCCL's name of each dtype it sums (attributes of ``cupy.cuda.nccl``).
NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


def _current_stream_ptr() -> int:
    import cupy

    return int(cupy.cuda.get_current_stream().ptr)


class NcclAllReduce:
    """Sum contiguous CuPy arrays over ``size`` processes with NCCL.

    Parameters
    ----------
    rank, size : int
        This process's rank and the number of processes (one GPU each).
    bcast : callable
        ``bcast(value)`` returns rank 0's ``value`` on every rank (e.g. ``comm.bcast``).
    nccl : module, optional
        ``cupy.cuda.nccl`` (default) or a stand-in with the same names.
    stream_ptr : callable, optional
        The CUDA stream to enqueue on (default: CuPy's current stream).
    """

    def __init__(
        self,
        rank: int,
        size: int,
        bcast: Callable[[Any], Any],
        *,
        nccl: Any = None,
        stream_ptr: Callable[[], int] | None = None,
    ) -> None:
        if nccl is None:
            from cupy.cuda import nccl
        self.nccl, self.rank, self.size = nccl, rank, size
        self.stream_ptr = stream_ptr or _current_stream_ptr
        uid = nccl.get_unique_id() if rank == 0 else None
        uid = bcast(uid)
        self.comm = nccl.NcclCommunicator(size, uid, rank)

    def __call__(self, buf: Any) -> Any:
        """Sum the contiguous CuPy array ``buf`` over the ranks, in place; returns it."""
        name = NCCL_DTYPES.get(str(buf.dtype))
        if name is None:
            raise TypeError(f"NCCL all-reduce: dtype {buf.dtype} is not one of {list(NCCL_DTYPES)}")
        nccl = self.nccl
        ptr = buf.data.ptr
        self.comm.allReduce(
            ptr, ptr, buf.size, getattr(nccl, name), nccl.NCCL_SUM, self.stream_ptr()
        )
        return buf
