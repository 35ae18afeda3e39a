"""Which rows of each global mini-batch a rank trains on.

Every rank visits the same global order (drawn from the same Generator state); the global
batch of rows [s, e) of that order is split into ``size`` contiguous shards whose lengths differ
by at most one (:func:`shard_bounds`), rank r taking the r-th. A rank whose shard is empty (a
last batch with fewer rows than ranks) still runs its step on one row, with weight 0, so the
collective calls stay in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from arrayprop.data.adapter import DeviceData, gather_rows

__all__ = ["ShardedBatches", "shard_bounds"]


def shard_bounds(rows: int, size: int, rank: int) -> tuple[int, int]:
    """(lo, hi): rank ``rank``'s rows of ``rows`` split into ``size`` contiguous shards.

    The first ``rows mod size`` ranks hold one row more (as ``numpy.array_split``).
    """
    q, r = divmod(rows, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


class ShardedBatches:
    """The device batches of one rank, and the row counts of the batch being trained.

    Attributes
    ----------
    rows : int
        Rows of the current global batch this rank holds (0: it trains on a stand-in row).
    global_rows : int
        Rows of the current global batch over all ranks.
    """

    def __init__(self, data: DeviceData, size: int, rank: int) -> None:
        self.data, self.size, self.rank = data, size, rank
        self.rows = self.global_rows = 0

    def __call__(
        self, batch: int, order: np.ndarray | None = None, start: int = 0
    ) -> Iterator[tuple[Any, Any]]:
        """This rank's shards of the global batches of ``batch`` rows of ``order``, from the
        global position ``start``: the signature of :meth:`DeviceData.batches`."""
        d = self.data
        be = d.be
        take = be.xp.take
        perm = None
        if d.resident and order is not None:
            perm = be.asarray(order)  # once per epoch, as DeviceData.batches does
        y_dtype = be.xp.int64 if d.labels else be.dtype
        x_dtype = None if d.indices else be.dtype
        for s in range(start, d.n, batch):
            e = min(s + batch, d.n)
            lo, hi = shard_bounds(e - s, self.size, self.rank)
            self.rows, self.global_rows = hi - lo, e - s
            a, b = (s + lo, s + hi) if hi > lo else (s, s + 1)
            if d.resident:
                if perm is None:
                    yield d.x[a:b, ...], None if d.y is None else d.y[a:b, ...]
                else:
                    ib = perm[a:b]
                    yield take(d.x, ib, axis=0), None if d.y is None else take(d.y, ib, axis=0)
            else:  # one copy of this rank's rows per step (the data set exceeds the budget)
                rows = slice(a, b) if order is None else order[a:b]
                xs = be.asarray(gather_rows(d.x, rows), dtype=x_dtype, check_range=False)
                ys = None
                if d.y is not None:
                    ys = be.asarray(gather_rows(d.y, rows), dtype=y_dtype, check_range=False)
                yield xs, ys
