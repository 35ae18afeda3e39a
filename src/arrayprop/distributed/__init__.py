"""Data-parallel training over MPI (mpi4py) on CPUs and NCCL on GPUs; see docs/distributed.md.

Run the same script on every rank (``mpirun -n 4 python train.py``) and pass
``distributed=True`` to :func:`arrayprop.fit` and :func:`arrayprop.evaluate`: each rank trains
on its shard of every global mini-batch, and one all-reduce over a flat buffer per step sums
the gradients, weighted so that the result equals training on the global batch in one process.
"""

from arrayprop.distributed.parallel import (
    DataParallel,
    EvalShard,
    broadcast_parameters,
    check_same_model,
    data_parallel,
    loss_reduction,
    model_fingerprint,
    rank_stream_seed,
    transport_for,
)
from arrayprop.distributed.shard import ShardedBatches, shard_bounds
from arrayprop.distributed.world import World, init, launched_size

__all__ = [
    "DataParallel",
    "EvalShard",
    "ShardedBatches",
    "World",
    "broadcast_parameters",
    "check_same_model",
    "data_parallel",
    "init",
    "launched_size",
    "loss_reduction",
    "model_fingerprint",
    "rank_stream_seed",
    "shard_bounds",
    "transport_for",
]
