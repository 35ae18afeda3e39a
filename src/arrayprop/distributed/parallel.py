"""Data-parallel training: what ``fit(..., distributed=True)`` adds to a run.

:func:`data_parallel` checks once that every rank holds the same model and the same run
(:func:`check_same_model`), gives every rank rank 0's shuffling Generator (one global order),
leaves checkpoint writing to rank 0, and hands the run a :class:`DataParallel`: its batches are
this rank's shards (:class:`~arrayprop.distributed.shard.ShardedBatches`) and, after each
backward pass, :meth:`DataParallel.sync` sums the weighted gradients, the loss, the metric sums,
the running statistics and the stop flag of every rank in **one** all-reduce over one flat
buffer. See docs/distributed.md.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from arrayprop.backends import Backend, backend_of
from arrayprop.distributed.shard import ShardedBatches, shard_bounds
from arrayprop.distributed.world import World, init
from arrayprop.errors import DistributedError
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import RMSE, Loss
from arrayprop.random import rng_from_state, rng_state

__all__ = [
    "DataParallel",
    "EvalShard",
    "broadcast_parameters",
    "check_same_model",
    "data_parallel",
    "loss_reduction",
    "model_fingerprint",
    "rank_stream_seed",
    "transport_for",
]


def loss_reduction(loss: Loss, whose: str = "fit(distributed=True)") -> str:
    """How ``loss`` reduces over a batch: ``"mean"`` (each rank's gradient weighs by its share
    of the global batch) or ``"sum"`` (added as it is).

    Raises
    ------
    DistributedError
        For a loss that is neither (RMSE: the root of a mean), whose gradient over the global
        batch is not a weighted sum of the ranks' gradients.
    """
    if isinstance(loss, RMSE):
        raise DistributedError(
            f"{whose}: loss {loss!r} is not a sum or mean over samples, so the ranks' gradients "
            "cannot be combined exactly; use MSE (the same minimum)"
        )
    reduction = getattr(loss, "reduction", "mean")
    return "sum" if reduction == "sum" else "mean"


def rank_stream_seed(seed: int, rank: int) -> int:
    """The root of rank ``rank``'s per-step random stream (Dropout masks): ``seed`` on rank 0,
    a distinct root derived from (seed, rank) elsewhere, so that ranks draw different masks."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _checksum(be: Backend, array: Any) -> int:
    host = np.ascontiguousarray(be.to_host(array))
    return zlib.crc32(host.tobytes())


def model_fingerprint(model: Layer, be: Backend) -> list[tuple[str, tuple[int, ...], str, int]]:
    """(name, shape, dtype, CRC-32 of the values) of every parameter and buffer of ``model``."""
    state = [(n, p.data) for n, p in model.named_parameters()]
    state += [(n, b.data) for n, b in model.named_buffers()]
    return [(n, tuple(a.shape), str(a.dtype), _checksum(be, a)) for n, a in state]


def check_same_model(
    world: World, model: Layer, be: Backend, settings: dict[str, Any] | None = None
) -> None:
    """Refuse to start unless every rank holds the same model and ``settings``.

    One allgather of each rank's :func:`model_fingerprint` (a checksum per array) and settings;
    every rank raises the same error, so none is left waiting.

    Raises
    ------
    DistributedError
        Naming the first setting or the first parameter (in the model's order) that differs
        from rank 0's, and the ranks where it differs.
    """
    mine = (dict(settings or {}), model_fingerprint(model, be))
    every = world.allgather(mine)
    ref_settings, ref_state = every[0]
    for key in ref_settings:
        bad = [r for r, (s, _) in enumerate(every) if s.get(key) != ref_settings[key]]
        if bad:
            values = {r: every[r][0].get(key) for r in [0, *bad]}
            raise DistributedError(
                f"distributed: the ranks differ in {key}: {values} (rank: value); every rank "
                "must run the same fit"
            )
    names = [entry[0] for entry in ref_state]
    for r, (_, state) in enumerate(every):
        if [entry[0] for entry in state] != names or [e[1:3] for e in state] != [
            e[1:3] for e in ref_state
        ]:
            raise DistributedError(
                f"distributed: rank {r} holds a model of another structure than rank 0's "
                f"(parameters {[(e[0], e[1]) for e in state]} against "
                f"{[(e[0], e[1]) for e in ref_state]})"
            )
    for i, name in enumerate(names):
        bad = [r for r, (_, state) in enumerate(every) if state[i][3] != ref_state[i][3]]
        if bad:
            raise DistributedError(
                f"distributed: the ranks hold different models: parameter {name!r} differs "
                f"between rank 0 and rank(s) {bad}. Build the model with the same seed on "
                "every rank, or call arrayprop.distributed.broadcast_parameters(model) first"
            )


def transport_for(be: Backend, world: World, *, nccl: Any = None) -> Callable[[Any], Any]:
    """The all-reduce (sum, in place) of a flat buffer of backend ``be``.

    Host arrays (NumPy, PyTorch on the CPU, ...): MPI's ``Allreduce`` through mpi4py. CuPy:
    NCCL (:class:`arrayprop.backends.cupy.nccl.NcclAllReduce`, its unique id sent through
    MPI). Arrays on another device (PyTorch on CUDA): staged through the host and MPI.
    """
    if be.name == "cupy":
        from arrayprop.backends.cupy.nccl import NcclAllReduce

        return NcclAllReduce(world.rank, world.size, world.bcast, nccl=nccl)

    def host_allreduce(buf: Any) -> Any:
        host = np.require(be.to_host(buf), requirements=["C", "W"])
        return be.asarray(world.allreduce_host(host), dtype=buf.dtype, check_range=False)

    return host_allreduce


class DataParallel:
    """The distributed side of one ``fit`` run: this rank's batches and the per-step sum.

    ``run`` is the :class:`arrayprop.training.loop.Run` (its model, loss, parameters, stop
    flag); ``allreduce`` sums a flat device buffer over the ranks (:func:`transport_for`).
    """

    def __init__(self, world: World, run: Any, allreduce: Callable[[Any], Any]) -> None:
        self.world, self.run, self.allreduce = world, run, allreduce
        self.mean = loss_reduction(run.loss) == "mean"
        self.batches = ShardedBatches(run.train, world.size, world.rank)
        self.buffers = [
            b for _, b in run.model.named_buffers() if run.xp.isdtype(b.data.dtype, "real floating")
        ]
        self.host = run.be.name != "cupy"  # NCCL sums on the device, MPI on the host
        self.calls = 0  # all-reduces made (one per step)

    def sync(self, value: Any, sums: Sequence[Any]) -> tuple[Any, list[Any], int]:
        """Sum this step over the ranks; returns the global batch's (loss, metric sums, rows).

        Each rank's gradients and loss weigh by its share of the global batch (``mean``
        losses) so that the result is the gradient of the global batch, exactly as one process
        would compute it; metric sums add up; floating buffers (running statistics) average,
        weighted by the ranks' shares of the global batch (a running mean then follows the
        global batch's mean).
        The parameters' ``grad`` are replaced by the sums.
        """
        run = self.run
        xp, acc = run.xp, run.acc
        rows, total = self.batches.rows, self.batches.global_rows
        w = (rows / total if self.mean else 1.0) if rows else 0.0
        grads = [p.grad for p in run.params]
        pieces = [
            xp.zeros((int(np.prod(p.shape)),), dtype=acc, device=run.be.device)
            if g is None
            else xp.reshape(g if g.dtype == acc else xp.astype(g, acc), (-1,))
            for p, g in zip(run.params, grads, strict=True)
        ]
        flat = xp.concat(pieces) * w if pieces else xp.zeros((0,), dtype=acc, device=run.be.device)
        parts = [flat, xp.reshape(xp.astype(value, acc), (1,)) * w]
        if sums:
            parts.append(xp.stack([xp.astype(s, acc) for s in sums]) * (1.0 if rows else 0.0))
        share = rows / total  # 0 for a stand-in row
        parts += [xp.reshape(xp.astype(b.data, acc), (-1,)) * share for b in self.buffers]
        stopping = bool(run.stop.requested)
        if self.host:
            parts.append(xp.asarray([1.0 if stopping else 0.0], dtype=acc, device=run.be.device))
        buf = self.allreduce(xp.concat(parts))
        self.calls += 1
        if self.host:
            stopping = bool(buf[-1] > 0)
        else:  # NCCL: the flag goes through MPI, so the device is not read every step
            stopping = self.world.any(stopping)
        if stopping:
            run.stop.requested = True
        o = 0
        for p, g in zip(run.params, grads, strict=True):
            k = int(np.prod(p.shape))
            if g is not None:
                piece = xp.reshape(buf[o : o + k], p.shape)
                p.grad = piece if piece.dtype == g.dtype else xp.astype(piece, g.dtype)
            o += k
        value = buf[o]
        o += 1
        sums = [buf[o + j] for j in range(len(sums))]
        o += len(sums)
        for b in self.buffers:
            k = int(np.prod(b.shape))
            b.data = xp.astype(xp.reshape(buf[o : o + k], b.shape), b.data.dtype)
            o += k
        return value, sums, total


def broadcast_parameters(model: Layer, world: World | None = None) -> None:
    """Give every rank rank 0's parameters and buffers (one MPI broadcast per array, on the
    host): for models built without a common seed. ``world`` defaults to :func:`init`'s."""
    world = init() if world is None else world
    for _, p in [*model.named_parameters(), *model.named_buffers()]:
        be = backend_of(p.data)
        host = np.require(be.to_host(p.data), requirements=["C", "W"])
        world.comm.Bcast(host, root=0)
        p.data = be.asarray(host, dtype=p.data.dtype, check_range=False)


def data_parallel(
    run: Any, world: World, *, settings: dict[str, Any] | None = None, nccl: Any = None
) -> DataParallel:
    """Make ``run`` (a fit run, after any resume) train as one rank of ``world``.

    Checks that every rank has the same model and run settings, gives every rank rank 0's
    shuffling Generator and per-step stream root, turns checkpoint writing off on ranks other
    than 0 and sets ``run.parallel``.
    """
    check_same_model(world, run.model, run.be, settings)
    loss_reduction(run.loss)
    state = world.bcast((rng_state(run.rng), run.random_seed))
    run.rng = rng_from_state(state[0])
    run.random_seed = rank_stream_seed(state[1], world.rank)
    if not world.leader:
        run.checkpoint = None
    run.parallel = DataParallel(world, run, transport_for(run.be, world, nccl=nccl))
    return run.parallel


class EvalShard:
    """This rank's rows of an evaluation set, and the sum of the ranks' results.

    The set's batches of ``batch`` rows (those one process would evaluate) are split among the
    ranks, whole: rank r evaluates the contiguous batches :func:`shard_bounds` gives it, so each
    batch's loss is the one a single process computes, whatever the loss (a rank left without
    a batch evaluates row 0 with weight 0, so that every rank joins the sum).
    """

    def __init__(self, world: World, x: Any, y: Any, batch: int) -> None:
        n = len(x)
        lo, hi = shard_bounds(-(-n // batch), world.size, world.rank)
        lo, hi = lo * batch, min(hi * batch, n)
        self.world, self.n, self.keep = world, n, 1.0 if hi > lo else 0.0
        lo, hi = (lo, hi) if hi > lo else (0, min(1, n))
        self.x = x[lo:hi]
        self.y = None if y is None else y[lo:hi]

    def reduce(self, sums: Sequence[float]) -> list[float]:
        """The ranks' sums added up (one MPI all-reduce on the host)."""
        buf = np.asarray(sums, dtype=np.float64) * self.keep
        return self.world.allreduce_host(buf).tolist()
