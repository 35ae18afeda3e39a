"""Checkpoints of a :func:`arrayprop.fit` run: save its position and state, resume from them.

A checkpoint holds the weights and the optimizer state (through :mod:`arrayprop.checkpoint`),
the History, the shuffling Generator's state and the position in the epoch, so that
``resume=True`` continues an interrupted run to exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

from typing import Any

from arrayprop import checkpoint as ckpt
from arrayprop.data.adapter import host_array
from arrayprop.errors import CheckpointError
from arrayprop.random import rng_from_state, rng_state
from arrayprop.training.callbacks import History
from arrayprop.training.loop import Run


def save_run(run: Run) -> None:
    """Write ``run``'s checkpoint, if it has one (atomically: :func:`arrayprop.checkpoint.save`)."""
    if run.checkpoint is None:
        return
    state = {
        "format": 1,
        "epoch": run.epoch_done,
        "step": run.step,
        "started": run.started,
        "n": run.train.n,
        "batch_size": run.batch,
        "shuffle": run.shuffle,
        "schedule": None if run.schedule is None else run.schedule.state_dict(),
        "schedule_interval": run.schedule_interval,
        "rng": rng_state(run.rng),
        "history": run.history.as_dict(),
        "partial": {
            "loss_sum": run.loss_sum,
            "metric_sums": list(run.metric_sums),
            "seconds": run.seconds,
        },
    }
    extra: dict[str, Any] = {"fit": state}
    if run.started and run.order is not None:
        extra["fit_order"] = run.order
    ckpt.save(run.model, run.checkpoint, optimizer=run.optimizer, extra=extra)


def restore_run(run: Run, path: Any) -> None:
    """Make ``run`` continue from the checkpoint at ``path`` (written by :func:`save_run`)."""
    loaded = ckpt.load(path, backend=run.be)
    extra = loaded.extra
    state = extra.get("fit")
    if state is None:
        raise CheckpointError(f"{path}: not a checkpoint written by fit(checkpoint=...)")
    src, dst = loaded.model.parameters(), run.params
    shapes = [tuple(p.shape) for p in src], [tuple(p.shape) for p in dst]
    if shapes[0] != shapes[1]:
        raise CheckpointError(
            f"{path}: its model has parameter shapes {shapes[0]}, this one {shapes[1]}"
        )
    same_n = state["n"] == run.train.n
    if (state["started"] and not same_n) or (
        state["step"] and (not same_n or state["batch_size"] != run.batch)
    ):
        raise CheckpointError(
            f"{path}: saved within an epoch of {state['n']} samples in batches of "
            f"{state['batch_size']}; this run has {run.train.n} and {run.batch}, so it "
            "cannot continue that epoch"
        )
    for p, q in zip(dst, src, strict=True):
        p.data = run.be.asarray(q.data, dtype=p.data.dtype)
    ckpt.restore_optimizer(run.optimizer, loaded)
    if run.schedule is not None:
        if state.get("schedule") is None:
            raise CheckpointError(f"{path}: saved without a schedule, this run has one")
        saved = state.get("schedule_interval", "epoch")  # files of before the option: epoch
        if saved != run.schedule_interval:
            raise CheckpointError(
                f"{path}: its schedule stepped every {saved}; this run steps it every "
                f"{run.schedule_interval}: resume with schedule_interval={saved!r}"
            )
        run.schedule.load_state_dict(state["schedule"])
    run.history = History.from_dict(state["history"])
    run.history.interrupted = run.history.stopped_early = False  # this run's to set
    run.rng = rng_from_state(state["rng"])
    run.epoch_done, run.step = int(state["epoch"]), int(state["step"])
    run.started = bool(state["started"])
    order = extra.get("fit_order")
    run.order = None if order is None else host_array(order, "checkpoint order")
    if run.started:
        partial = state["partial"]
        if len(partial["metric_sums"]) != len(run.metrics):
            raise CheckpointError(
                f"{path}: saved mid-epoch with {len(partial['metric_sums'])} metric(s); this "
                f"run has {len(run.metrics)} ({[m.name for m in run.metrics]}), so it "
                "cannot continue that epoch's sums; resume with the same metrics"
            )
        run.loss_sum = float(partial["loss_sum"])
        run.metric_sums = [float(s) for s in partial["metric_sums"]]
        run.seconds = float(partial["seconds"])
        run.window_start = run.step
    run.snapshot()
