"""arrayprop.distributed in one process, with stand-ins for MPI and NCCL (no launcher needed):
sharding, the transport chosen per backend, the NCCL bootstrap, the model check, and fit and
evaluate on a world of one (one all-reduce per step). The multi-rank runs are test_mpi.py."""

from __future__ import annotations

import itertools
import types
from typing import Any

import numpy as np
import pytest

import arrayprop as ap
import arrayprop.distributed.world as world_module
from arrayprop.backends.cupy.nccl import NcclAllReduce
from arrayprop.data.adapter import Expect, prepare
from arrayprop.distributed import (
    ShardedBatches,
    check_same_model,
    loss_reduction,
    model_fingerprint,
    rank_stream_seed,
    shard_bounds,
    transport_for,
)
from arrayprop.errors import BackendUnavailableError, DistributedError


class FakeWorld:
    """A World whose collectives are computed here: ``others`` are the other ranks' values of
    allgather; allreduce_host adds ``peer_factor - 1`` copies of this rank's buffer."""

    def __init__(self, rank: int = 0, size: int = 1, others: list[Any] | None = None) -> None:
        self.rank, self.size, self.local_rank = rank, size, rank
        self.others = others or []
        self.reductions = 0
        self.barriers = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def allgather(self, value: Any) -> list[Any]:
        return [value, *self.others] if self.rank == 0 else [*self.others, value]

    def bcast(self, value: Any, root: int = 0) -> Any:
        return value

    def allreduce_host(self, buf: np.ndarray) -> np.ndarray:
        self.reductions += 1
        buf *= self.size  # as if every other rank sent the same buffer
        return buf

    def any(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        self.barriers += 1


@pytest.fixture
def fake_world(monkeypatch):
    """Install a FakeWorld as the process's World (what ``init()`` returns)."""

    def install(world: FakeWorld) -> FakeWorld:
        monkeypatch.setattr(world_module, "_WORLD", world)
        return world

    return install


# -- sharding -----------------------------------------------------------------------------------


def test_shard_bounds_split_every_batch_contiguously_and_evenly():
    for rows in range(0, 23):
        for size in range(1, 6):
            bounds = [shard_bounds(rows, size, r) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            lengths = [hi - lo for lo, hi in bounds]
            assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "chunked"])
@pytest.mark.parametrize("shuffled", [True, False], ids=["shuffled", "in-order"])
def test_sharded_batches_cover_each_global_batch_once(resident, shuffled):
    """Over the ranks, each global batch's rows are visited once, in the global order; a rank
    without rows gets a stand-in row and says so (rows == 0)."""
    be = ap.get_backend("numpy", dtype="float64")
    n, batch, size = 23, 7, 3  # last batch: 2 rows for 3 ranks
    x = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))
    y = np.arange(n, dtype=np.float64)[:, None]
    if not resident:  # host data (not a NumPy array, which is the numpy backend's own)
        x, y = x.tolist(), y.tolist()
    budget = 10**6 if resident else 64
    d = prepare(be, x, y, Expect(None, None, "test"), what="test", budget=budget)
    assert d.resident == resident
    order = np.random.default_rng(0).permutation(n) if shuffled else None
    seen = [[] for _ in range(size)]
    for r in range(size):
        shards = ShardedBatches(d, size, r)
        for xb, yb in shards(batch, order, 0):
            rows = [int(v) for v in be.to_host(yb)[:, 0]]
            seen[r].append((rows if shards.rows else [], shards.global_rows))
            assert be.to_host(xb)[:, 0].tolist() == rows
    visit = np.arange(n) if order is None else order
    for b, s in enumerate(range(0, n, batch)):
        joined = [row for r in range(size) for row in seen[r][b][0]]
        assert joined == visit[s : s + batch].tolist()
        assert {seen[r][b][1] for r in range(size)} == {min(batch, n - s)}
    assert seen[2][-1][0] == []  # rank 2 holds no row of the last batch


# -- transports -----------------------------------------------------------------------------------


class FakeNccl:
    """The names of ``cupy.cuda.nccl`` that NcclAllReduce uses, recording the calls."""

    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 6, 7, 8, 0

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        outer = self

        class NcclCommunicator:
            def __init__(self, ndev: int, uid: Any, rank: int) -> None:
                outer.calls.append(("NcclCommunicator", ndev, uid, rank))

            def allReduce(self, *args: Any) -> None:
                outer.calls.append(("allReduce", *args))

        self.NcclCommunicator = NcclCommunicator

    def get_unique_id(self) -> tuple[int, ...]:
        self.calls.append(("get_unique_id",))
        return tuple(range(128))


def _device_buffer(dtype: str, size: int) -> Any:
    return types.SimpleNamespace(
        dtype=np.dtype(dtype), size=size, data=types.SimpleNamespace(ptr=4096)
    )


@pytest.mark.parametrize("rank", [0, 1])
def test_nccl_bootstrap_sends_rank_0s_unique_id_through_mpi(rank):
    nccl, sent = FakeNccl(), []
    uid = tuple(range(128))

    def bcast(value):  # MPI's bcast: rank 0's value everywhere
        sent.append(value)
        return uid

    reduce = NcclAllReduce(rank, 4, bcast, nccl=nccl, stream_ptr=lambda: 77)
    assert sent == [uid if rank == 0 else None]  # only rank 0 draws the id
    assert nccl.calls[: 2 if rank == 0 else 1] == ([("get_unique_id",)] if rank == 0 else []) + [
        ("NcclCommunicator", 4, uid, rank)
    ]
    buf = _device_buffer("float64", 10)
    assert reduce(buf) is buf
    assert nccl.calls[-1] == ("allReduce", 4096, 4096, 10, FakeNccl.NCCL_FLOAT64, 0, 77)
    reduce(_device_buffer("float32", 3))
    assert nccl.calls[-1][4] == FakeNccl.NCCL_FLOAT32
    with pytest.raises(TypeError, match="int64"):
        reduce(_device_buffer("int64", 3))


def test_transport_is_nccl_for_cupy_and_mpi_for_host_arrays(backend):
    world = FakeWorld(rank=0, size=2)
    nccl = FakeNccl()
    cupy_like = types.SimpleNamespace(name="cupy")
    assert isinstance(transport_for(cupy_like, world, nccl=nccl), NcclAllReduce)
    assert nccl.calls[0] == ("get_unique_id",)
    host = transport_for(backend, world)
    assert not isinstance(host, NcclAllReduce)
    buf = backend.xp.asarray([1.0, 2.0], dtype=backend.dtype, device=backend.device)
    out = host(buf)
    assert world.reductions == 1
    assert backend.to_host(out).tolist() == [2.0, 4.0]  # summed over the (fake) two ranks
    assert type(out) is type(buf)


# -- the checks at the start ----------------------------------------------------------------------


def test_different_models_are_refused_naming_the_first_differing_parameter():
    be = ap.get_backend("numpy", dtype="float64")
    model = ap.mlp([3, 4, 2], seed=0, backend=be)
    other = ap.mlp([3, 4, 2], seed=0, backend=be)
    other.layers[2].weight.data = other.layers[2].weight.data + 1e-12
    other.layers[2].bias.data = other.layers[2].bias.data + 1
    theirs = ({"n": 10}, model_fingerprint(other, be))
    check_same_model(
        FakeWorld(0, 2, [({"n": 10}, model_fingerprint(model, be))]), model, be, {"n": 10}
    )
    with pytest.raises(DistributedError, match=r"parameter '2\.weight' differs .* rank\(s\) \[1\]"):
        check_same_model(FakeWorld(0, 2, [theirs]), model, be, {"n": 10})
    with pytest.raises(DistributedError, match=r"differ in n: \{0: 10, 1: 12\}"):
        check_same_model(FakeWorld(0, 2, [({"n": 12}, theirs[1])]), model, be, {"n": 10})
    wider = ap.mlp([3, 5, 2], seed=0, backend=be)
    with pytest.raises(DistributedError, match="another structure"):
        check_same_model(FakeWorld(0, 2, [({}, model_fingerprint(wider, be))]), model, be, {})


def test_losses_that_do_not_combine_are_refused():
    assert loss_reduction(ap.SoftmaxCrossEntropy()) == "mean"
    assert loss_reduction(ap.MSE()) == "mean"
    assert loss_reduction(ap.L2Loss("mean")) == "mean"
    assert loss_reduction(ap.L2Loss("sum")) == "sum"
    with pytest.raises(DistributedError, match=r"RMSE.*use MSE"):
        loss_reduction(ap.RMSE())


def test_each_rank_draws_its_own_random_stream():
    seeds = [rank_stream_seed(7, r) for r in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert rank_stream_seed(7, 2) == seeds[2]  # the same on every run


def test_launched_size_reads_the_launchers_environment(monkeypatch):
    for name in world_module.LAUNCHER_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert world_module.launched_size() == 1
    monkeypatch.setenv("PMI_SIZE", "4")
    assert world_module.launched_size() == 4
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert world_module.launched_size() == 3


def test_init_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setattr(world_module, "_WORLD", None)
    monkeypatch.setitem(__import__("sys").modules, "mpi4py", None)
    with pytest.raises(BackendUnavailableError, match=r"arrayprop\[mpi\]"):
        world_module.init()


# -- fit and evaluate on a world of one ---------------------------------------------------------


def _problem(be: ap.Backend) -> tuple[ap.Sequential, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(29, 4)), rng.integers(0, 3, size=29)
    return ap.mlp([4, 8, 3], seed=2, backend=be), x, y


def test_fit_on_one_rank_is_fit_with_one_all_reduce_per_step(backend, fake_world):
    world = fake_world(FakeWorld(0, 1))
    kwargs = dict(
        loss="softmax-ce", optimizer="adam", epochs=2, batch_size=6, seed=4, progress=None
    )
    model, x, y = _problem(backend)
    plain = ap.fit(model, x, y, **kwargs)
    model2, _, _ = _problem(backend)
    dist = ap.fit(model2, x, y, distributed=True, **kwargs)
    steps = 2 * -(-29 // 6)
    assert world.reductions == steps  # one all-reduce per step, over one flat buffer
    for (n, p), (_, q) in zip(model.named_parameters(), model2.named_parameters(), strict=True):
        np.testing.assert_allclose(
            backend.to_host(q.data), backend.to_host(p.data), rtol=0, atol=1e-14, err_msg=n
        )
    np.testing.assert_allclose(dist.history["loss"], plain.history["loss"], rtol=1e-14)
    got = ap.evaluate(model2, x, y, loss="softmax-ce", batch_size=8, distributed=True)
    want = ap.evaluate(model2, x, y, loss="softmax-ce", batch_size=8)
    assert got == pytest.approx(want, rel=1e-14)
    assert world.reductions == steps + 1


def test_ranks_other_than_0_write_and_print_nothing(tmp_path, capsys, fake_world):
    """Rank 1 of 2: no progress lines, no checkpoint file, no ModelCheckpoint file."""
    fake_world(FakeWorld(1, 2, [None]))  # rank 0's allgather entry is replaced below
    be = ap.get_backend("numpy", dtype="float64")
    model, x, y = _problem(be)
    world = world_module._WORLD
    world.allgather = lambda value: [value, value]
    ckpt, saved = tmp_path / "run.npz", tmp_path / "epoch{epoch}.npz"
    ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=6,
           progress="lines", checkpoint=ckpt, callbacks=[ap.ModelCheckpoint(saved)],
           distributed=True)  # fmt: skip
    assert capsys.readouterr().out == ""
    assert list(tmp_path.iterdir()) == []
    assert world.barriers == 1


@pytest.mark.parametrize("device_side", [False, True], ids=["mpi-host", "nccl-device"])
def test_one_flat_buffer_per_step_and_where_the_stop_flag_goes(
    device_side, fake_world, monkeypatch
):
    """The buffer of each step holds every gradient, the loss and the metric sums (one
    all-reduce); the stop flag rides in it on the host path, and goes through MPI on the NCCL
    path (so the device is not read every step). The NCCL transport itself is a stand-in."""
    import arrayprop.distributed.parallel as parallel

    world = fake_world(FakeWorld(0, 1))
    flags = []
    world.any = lambda flag: flags.append(flag) or flag
    sizes = []

    def transport(be, world, nccl=None):
        def reduce(buf):
            sizes.append(buf.shape[0])
            return buf

        return reduce

    monkeypatch.setattr(parallel, "transport_for", transport)
    if device_side:  # the branch DataParallel takes for CuPy
        init = parallel.DataParallel.__init__

        def nccl_init(self, *args):
            init(self, *args)
            self.host = False

        monkeypatch.setattr(parallel.DataParallel, "__init__", nccl_init)
    be = ap.get_backend("numpy", dtype="float64")
    model, x, y = _problem(be)
    ref, _, _ = _problem(be)
    kwargs = dict(loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=6, seed=3, progress=None)
    ap.fit(model, x, y, distributed=True, **kwargs)
    ap.fit(ref, x, y, **kwargs)
    steps = -(-29 // 6)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    assert sizes == [n_params + 1 + 1 + (0 if device_side else 1)] * steps  # grads, loss, acc
    assert flags == ([False] * steps if device_side else [])
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=1e-14)
