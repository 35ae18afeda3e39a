"""Checkpoints of a :func:`arrayprop.fit` run: save its position and state, resume from them.

A checkpoint holds the weights and the optimizer state (through :mod:`arrayprop.checkpoint`),
the History, the shuffling Generator's state and the position in the epoch, so that
``resume=True`` continues an interrupted run to exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

from typing import Any, NoReturn

from arrayprop import checkpoint as ckpt
from arrayprop.data.adapter import host_array
from arrayprop.errors import CheckpointError
from arrayprop.random import is_order, rng_from_state, rng_state
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
    """Make ``run`` continue from the checkpoint at ``path`` (written by :func:`save_run`).

    Everything is checked before anything of ``run``, its model or its optimizer changes: a
    malformed or mismatched checkpoint raises :class:`CheckpointError` naming the field (a
    crafted file cannot reach NumPy's global random state or index out of the data).
    """
    loaded = ckpt.load(path, backend=run.be)

    def fail(problem: str) -> NoReturn:
        raise CheckpointError(f"{path}: {problem}")

    state = _fit_state(loaded.extra, fail)
    order = _order(loaded.extra.get("fit_order"), state, fail)
    src, dst = loaded.model.parameters(), run.params
    shapes = [tuple(p.shape) for p in src], [tuple(p.shape) for p in dst]
    if shapes[0] != shapes[1]:
        fail(f"its model has parameter shapes {shapes[0]}, this one {shapes[1]}")
    same_n = state["n"] == run.train.n
    if (state["started"] and not same_n) or (
        state["step"] and (not same_n or state["batch_size"] != run.batch)
    ):
        fail(
            f"saved within an epoch of {state['n']} samples in batches of "
            f"{state['batch_size']}; this run has {run.train.n} and {run.batch}, so it "
            "cannot continue that epoch"
        )
    partial = state["partial"]
    if state["started"] and len(partial["metric_sums"]) != len(run.metrics):
        fail(
            f"saved mid-epoch with {len(partial['metric_sums'])} metric(s); this "
            f"run has {len(run.metrics)} ({[m.name for m in run.metrics]}), so it "
            "cannot continue that epoch's sums; resume with the same metrics"
        )
    _check_schedule(state["schedule"], run.schedule, fail)
    interval = state.get("schedule_interval", "epoch")  # files of before the option: epoch
    if run.schedule is not None and interval != run.schedule_interval:
        fail(
            f"its schedule stepped every {interval}; this run steps it every "
            f"{run.schedule_interval}: resume with schedule_interval={interval!r}"
        )
    saved_buffers = dict(loaded.model.named_buffers())
    for name, b in run.model.named_buffers():
        if name not in saved_buffers or tuple(saved_buffers[name].shape) != tuple(b.shape):
            fail(
                f"its model has no buffer {name!r} of shape {tuple(b.shape)}; resume with the "
                "model the run was saved with"
            )
    try:
        rng = rng_from_state(state["rng"])
    except ValueError as exc:
        fail(f"fit state field 'rng': {exc}")
    try:
        history = History.from_dict(state["history"])
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        fail(f"fit state field 'history' is malformed ({type(exc).__name__}: {exc})")
    # The optimizer and the schedule check what they are given before they change; should the
    # second refuse, the first is put back.
    before = run.optimizer.state_dict()
    try:
        ckpt.restore_optimizer(run.optimizer, loaded)
        if run.schedule is not None:
            run.schedule.load_state_dict(state["schedule"])
    except BaseException as exc:
        run.optimizer.load_state_dict(before)
        if isinstance(exc, CheckpointError) or not isinstance(exc, TypeError | ValueError):
            raise
        fail(f"fit state field 'schedule' is malformed ({type(exc).__name__}: {exc})")
    for p, q in zip(dst, src, strict=True):
        p.data = run.be.asarray(q.data, dtype=p.data.dtype)
    # The buffers too (BatchNorm's running statistics): training moved them as much as the
    # weights, and a forward in eval mode reads them.
    for name, b in run.model.named_buffers():
        b.data = run.be.asarray(saved_buffers[name].data, dtype=b.data.dtype)
    run.history = history
    run.history.interrupted = run.history.stopped_early = False  # this run's to set
    run.rng = rng
    run.epoch_done, run.step = state["epoch"], state["step"]
    run.started = state["started"]
    run.order = order
    if run.started:
        run.loss_sum = float(partial["loss_sum"])
        run.metric_sums = [float(s) for s in partial["metric_sums"]]
        run.seconds = float(partial["seconds"])
        run.window_start = run.step
    run.snapshot()


def _describe_schedule(saved: dict[str, Any]) -> str:
    hyper = saved.get("hyperparameters")
    args = ", ".join(f"{k}={v!r}" for k, v in hyper.items()) if isinstance(hyper, dict) else "?"
    return f"{saved.get('type')}({args})"


def _check_schedule(saved: Any, ours: Any, fail) -> None:
    """A run resumes with the schedule it was saved with, or the message says what to pass."""
    if saved is not None and not isinstance(saved, dict):
        fail(f"fit state field 'schedule' must be an object or null, got {type(saved).__name__}")
    if saved is not None and ours is None:
        fail(
            f"saved by a run with the learning-rate schedule {_describe_schedule(saved)} "
            f"(after {saved.get('steps')} of its steps); without it the learning rate would stay "
            "where the schedule left it; pass that schedule, built the same way, as schedule= "
            "to resume it (the command line: the same --schedule and --epochs)"
        )
    if saved is None and ours is not None:
        fail(
            f"saved by a run without a learning-rate schedule, and this run has {ours!r}; "
            "resume without schedule= (the command line: --schedule none), or start afresh"
        )
    if saved is None:
        return
    if (
        saved.get("type") != type(ours).__name__
        or saved.get("hyperparameters") != ours.hyperparameters()
    ):
        hint = ""
        if saved.get("type") == "CosineAnnealingLR":
            hint = (
                " (CosineAnnealingLR anneals over T_max epochs, usually the run's epochs: resume "
                "with the epochs the run was saved with)"
            )
        fail(
            f"saved with the learning-rate schedule {_describe_schedule(saved)}, and this run "
            f"has {ours!r}; a schedule cannot change midway: resume with "
            f"{_describe_schedule(saved)}{hint}, or start afresh"
        )


def _field(state: dict[str, Any], key: str, kinds: tuple[type, ...], what: str, fail) -> Any:
    value = state.get(key)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        shown = repr(value) if len(repr(value)) < 60 else type(value).__name__
        fail(f"fit state field {key!r} must be {what}, got {shown}")
    return value


def _fit_state(extra: dict[str, Any], fail) -> dict[str, Any]:
    """The ``fit`` entry of a checkpoint's extra, every field's type and range checked."""
    state = extra.get("fit")
    if state is None:
        fail("not a checkpoint written by fit(checkpoint=...)")
    if not isinstance(state, dict):
        fail(f"fit state must be an object, got {type(state).__name__}")
    number = (int, float)
    for key in ("epoch", "step"):
        if _field(state, key, (int,), "an int >= 0", fail) < 0:
            fail(f"fit state field {key!r} must be an int >= 0, got {state[key]}")
    for key in ("n", "batch_size"):
        if _field(state, key, (int,), "an int >= 1", fail) < 1:
            fail(f"fit state field {key!r} must be an int >= 1, got {state[key]}")
    for key in ("started", "shuffle"):
        _field(state, key, (bool,), "true or false", fail)
    steps = -(-state["n"] // state["batch_size"])
    if state["step"] > steps or (state["step"] and not state["started"]):
        fail(
            f"fit state field 'step' is {state['step']}, outside the {steps} steps of an epoch "
            f"of {state['n']} samples in batches of {state['batch_size']}"
        )
    _field(state, "rng", (dict,), "an object", fail)
    _field(state, "history", (dict,), "an object", fail)
    partial = _field(state, "partial", (dict,), "an object", fail)
    for key in ("loss_sum", "seconds"):
        _field(partial, key, number, "a number", fail)
    sums = _field(partial, "metric_sums", (list,), "a list of numbers", fail)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in sums):
        fail("fit state field 'metric_sums' must be a list of numbers")
    return state


def _order(order: Any, state: dict[str, Any], fail) -> Any:
    """The saved order of the epoch in progress: a permutation of the saved sample count."""
    n = state["n"]
    needed = state["started"] and state["shuffle"] and state["batch_size"] < n
    if order is None:
        if needed:
            fail("saved within a shuffled epoch but holds no array fit_order (its order)")
        return None
    order = host_array(order, "checkpoint order")
    if not is_order(order, n):
        fail(
            f"array fit_order must be an order of the {n} samples (each of 0..{n - 1} once), "
            f"got {order.dtype} of shape {order.shape} with values out of range or repeated"
        )
    return order
