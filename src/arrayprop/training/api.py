"""Training: one step (:func:`train_step`), the loop (:func:`fit`), evaluate and predict.

Array API standard only, through ``model.backend.xp``; data, host or device, enters through one
boundary, :func:`arrayprop.data.adapter.prepare`. How :func:`fit` keeps the device busy:

- **Data** is checked once, up front, by the adapter (on the host, or with one device reduction
  for device arrays). It moves to the device whole when it fits in ``max_device_bytes``, else in
  contiguous chunks of the epoch's shuffled order, one copy per chunk, never one per step.
  Batches are slices of the device copy, or ``xp.take`` with a device index array (drawn on the
  host once per epoch from a Generator seeded by ``seed``); the loop only consumes them.
- **Numbers**: each step appends its loss (a 0-d device array) and each metric's batch sum to a
  list; these are reduced on the device and read back in **one** device→host copy per progress
  refresh (the tqdm bar: every :data:`REFRESH_SECONDS`) or, without a bar, per epoch.
- **Divergence**: that same read says whether any loss of the window was NaN/inf (and at which
  step: the per-step losses stay on the device until the read) and whether every weight is still
  finite. If not, :class:`~arrayprop.errors.DivergenceError` names the epoch, the step and the
  first parameter (by dotted name, with its layer) whose gradient is non-finite, and the model
  gets back the copy of its weights taken at the previous read. The granularity is one refresh
  window: at most :data:`REFRESH_SECONDS` of training with the bar, one epoch without it. The
  optimizer's state is not rolled back; a checkpoint file is never written after a divergence.
- **Ctrl-C** (SIGINT, in the main thread) is deferred to the end of the running step: the step
  completes, ``fit`` saves a checkpoint when one is configured and returns the History so far.
  A KeyboardInterrupt raised by code inside a step (a callback, a patched function) ends the run
  the same way; a step it cuts short before ``optimizer.step()`` is simply not counted, one
  it cuts inside ``optimizer.step()`` is never written to the checkpoint (fit warns).
- **Checkpoints** (``checkpoint=path``) hold the weights, the optimizer state, the History, the
  shuffling Generator's state and the position in the epoch, so that ``resume=True`` continues an
  interrupted run to exactly the weights an uninterrupted run reaches.

This module holds the public API; the machinery is in :mod:`~arrayprop.training.args`
(argument checks), :mod:`arrayprop.data.adapter` (data checks and placement, device batches),
:mod:`~arrayprop.training.evaluation` (outputs and sums over a data set),
:mod:`~arrayprop.training.loop` (a run's state: epoch loop, loss window, divergence, Ctrl-C) and
:mod:`~arrayprop.training.resume` (saving and resuming a run).
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from arrayprop.backends.threads import choose_blas_threads
from arrayprop.checkpoint.write import check_rebuildable
from arrayprop.data.adapter import prepare
from arrayprop.distributed import EvalShard, data_parallel
from arrayprop.distributed import init as init_distributed
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss, get_loss, targets_checked
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.schedules import Schedule
from arrayprop.random import host_rng, stepping, stream_seed
from arrayprop.training.args import (
    DEFAULT_METRICS,
    check_argument,
    expected_data,
    largest_gemm,
    make_display,
    model_backend,
    resolve_metrics,
    resolve_optimizer,
    split_tail,
    warn_double_softmax,
)
from arrayprop.training.callbacks import Callback, History, ModelCheckpoint, prepare_directory
from arrayprop.training.evaluation import eval_sums, outputs
from arrayprop.training.loop import Run, defer_sigint
from arrayprop.training.metrics import Metric
from arrayprop.training.resume import restore_run, save_run

__all__ = [
    "DEFAULT_MAX_DEVICE_BYTES",
    "REFRESH_SECONDS",
    "evaluate",
    "fit",
    "predict",
    "train_step",
]

#: Default budget for the device copy of a data set (bytes); larger sets go in chunks.
DEFAULT_MAX_DEVICE_BYTES = 512 * 2**20
#: Seconds between two reads of the running loss while a progress bar is shown.
REFRESH_SECONDS = 0.5
#: Per-step device scalars kept before they are summed on the device (bounds their memory).
WINDOW_STEPS = 1024


def train_step(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    x: Any,
    y: Any,
    *,
    keep_grads: bool = False,
    seed: int = 0,
) -> Any:
    """One gradient-descent step on the mini-batch (x, y), in training mode.

    Runs the forward pass, the loss and its gradient, the backward pass (which skips ∂C/∂x, not
    needed to train, where the model takes that hint) and ``optimizer.step()``. Afterwards
    every parameter's ``.grad`` holds this step's gradient (a Dense weight gradient is formed
    when first read: plain :class:`~arrayprop.SGD` on NumPy folds it into its update instead,
    eq. 7a of docs/math.md).

    Parameters
    ----------
    x : array, shape (batch, ...)
        On the model's backend (host data is copied there first).
    y : array
        Targets in the form the loss takes, e.g. integer labels (batch,).
    keep_grads : bool
        Form every gradient before the update, so that no optimizer folds it (the update then
        reads the stored gradients, as with every other optimizer).
    seed : int
        Root of the per-step random stream layers draw from (:meth:`Layer.step_rng`), keyed by
        it and ``optimizer.steps``.

    Returns
    -------
    array, shape ()
        The loss before the update, as a backend scalar: reading it (``float(...)``) is left to
        the caller, so no device→host copy happens here.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        # The root of the step's random stream: NumPy would refuse it only at the first draw,
        # and a bool or a float would silently pick some stream.
        raise ValueError(f"train_step: seed must be an int >= 0, got {seed!r}")
    seed = int(seed)
    be = model.backend
    if be is None and model.parameters():
        be = model_backend(model, "train_step")  # a user's layer holding others
    if be is not None:
        # Moves host data and casts float data to the model's dtype (on numpy, host data counts
        # as the backend's own and would otherwise reach Dense as float64 for a float32 model).
        x = be.asarray(x, what="train_step: x")
    if not model.training:
        model.train()
    if "path" not in vars(model):  # a user's model not yet named (Sequential names itself)
        model.assign_names()
    with stepping(seed, optimizer.steps):
        pred = model.forward(x)
        value, grad = loss.value_and_grad(pred, y)
        if model.speed_hints:
            model.backward(grad, inplace=True, input_grad=False)
        else:
            model.backward(grad)
    if keep_grads:
        for p in model.parameters():
            _ = p.grad  # formed now: the update reads it rather than folding it
    optimizer.step()
    return value


def _budget(whose: str, max_device_bytes: int | None) -> int:
    if max_device_bytes is None:
        return DEFAULT_MAX_DEVICE_BYTES
    return check_argument(whose, "max_device_bytes", max_device_bytes)


def evaluate(
    model: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss | None = None,
    metrics: Sequence[str | Metric] | None = DEFAULT_METRICS,
    batch_size: int = 256,
    max_device_bytes: int | None = None,
    distributed: bool = False,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on (x, y), computed on the device in batches.

    Parameters
    ----------
    x : array, shape (n, ...)
        Host data (NumPy, memmap) or an array of the model's backend. When the model declares
        an input width (``model.in_features``), x's last axis must have it.
    y : array, shape (n,) or (n, ...)
        Integer class labels (for a model that declares its output width,
        ``model.out_features``) or target rows of the output's shape.
    loss : str or Loss, optional
        Also report ``"loss"``: the batch-size-weighted mean of the per-batch loss values (the
        mean over samples for every loss that averages over its batch).
    metrics : sequence of str or Metric, or None
        Default accuracy (dropped for regression losses unless asked for explicitly).
    batch_size : int
        Samples per forward pass.
    max_device_bytes : int, optional
        Budget for the device copy of host data (default :data:`DEFAULT_MAX_DEVICE_BYTES`).
    distributed : bool
        Under an MPI launcher, every rank passes the whole set and evaluates its share of the
        batches; the sums are added over the ranks, so every rank returns the numbers of the
        whole set (docs/distributed.md).

    Returns
    -------
    dict of str to float
        ``{"loss": ..., "accuracy": ...}``, read from the device once.

    Raises
    ------
    NonFiniteError
        NaN or infinity in the data, or a value too large for the model's dtype (the cast to it
        would make it ±inf), found before anything is computed.
    """
    be = model_backend(model, "evaluate")
    loss = None if loss is None else get_loss(loss)
    ms = resolve_metrics(metrics, loss)
    batch = check_argument("evaluate", "batch_size", batch_size)
    budget = _budget("evaluate", max_device_bytes)
    expect = expected_data(model, loss)
    shard = None
    if check_argument("evaluate", "distributed", distributed):
        shard = EvalShard(init_distributed(), x, y, batch)
        x, y = shard.x, shard.y
    d = prepare(be, x, y, expect, what="evaluate", budget=budget)
    with targets_checked():  # prepare() checked them all
        sums = be.to_host(eval_sums(model, d, loss, ms, batch)).tolist()
    n = d.n
    if shard is not None:
        sums, n = shard.reduce(sums), shard.n
    names = (["loss"] if loss is not None else []) + [m.name for m in ms]
    return {name: value / n for name, value in zip(names, sums, strict=True)}


def predict(
    model: Layer, x: Any, *, batch_size: int = 256, max_device_bytes: int | None = None
) -> Any:
    """The model's output for ``x``, computed in batches.

    Parameters
    ----------
    x : array, shape (n, ...)
        Host data (NumPy, memmap; moved to the device in chunks of at most
        ``max_device_bytes``) or an array of the model's backend. When the model declares an
        input width (``model.in_features``), x's last axis must have it.

    Returns
    -------
    array, shape (n, ...)
        On the model's backend (use ``model.backend.to_host`` for a NumPy array).

    Raises
    ------
    NonFiniteError
        A value of ``x`` too large for the model's dtype (the cast to it would make it ±inf);
        NaN and infinity themselves go through.
    """
    be = model_backend(model, "predict")
    batch = check_argument("predict", "batch_size", batch_size)
    budget = _budget("predict", max_device_bytes)
    expect = expected_data(model, None)
    return outputs(model, prepare(be, x, None, expect, what="predict", budget=budget), batch)


def fit(
    model: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss,
    optimizer: str | Optimizer,
    epochs: int,
    batch_size: int | None = 32,
    shuffle: bool = True,
    seed: Any = None,
    validation_data: tuple[Any, Any] | None = None,
    metrics: Sequence[str | Metric] | None = DEFAULT_METRICS,
    callbacks: Iterable[Callback] = (),
    progress: bool | str | None = True,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    max_device_bytes: int | None = None,
    schedule: Schedule | None = None,
    schedule_interval: str = "epoch",
    validation_split: float | None = None,
    verbose: int | str | None = None,
    sample_weight: Any = None,
    blas_threads: int | str | None = "auto",
    distributed: bool = False,
) -> History:
    """Train ``model`` on (x, y) by mini-batch gradient descent.

    Parameters
    ----------
    model : Sequential (or another Layer)
        Trained in place, on its own backend (for a user's layer holding others: that of its
        parameters).
    x : array, shape (n, ...)
        Host data (NumPy array or ``numpy.memmap``) or an array of the model's backend. Only
        the model's declared input width (``model.in_features``, when not None) is checked,
        against x's last axis.
    y : array, shape (n,) or (n, ...)
        Integer class labels 0..k−1 (with ``"softmax-ce"``; the model must declare its output
        width ``model.out_features`` = k) or target rows of the output's shape (whose last axis
        must be the declared output width); same placement rules as ``x``.
    loss : str or Loss
        ``"softmax-ce"``, ``"mse"``, ``"bce"``, ... or an instance.
    optimizer : str or Optimizer
        ``"sgd"`` (default hyperparameters) or an instance built on ``model.parameters()``.
    epochs : int
        Total number of epochs (a resumed run counts the epochs already done).
    batch_size : int or None
        Samples per step: 32 (mini-batch), 1 (stochastic) or None (full batch). The last batch
        of an epoch holds the remainder.
    shuffle : bool
        Visit the samples in a new random order each epoch.
    seed : int or numpy.random.Generator, optional
        Seed of the host Generator that draws the orders.
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch (``val_loss``, ``val_<metric>``).
    metrics : sequence of str or Metric, or None
        Training (and validation) metrics; the default, accuracy, is reported for the class
        losses (``"softmax-ce"``, ``"bce"``) only: a regression loss or a user's own loss gets it
        only when asked for (``metrics=["accuracy"]``).
    callbacks : iterable of Callback
        See :mod:`arrayprop.training.callbacks`.
    progress : True, False, None, "bar" or "lines"
        True: a progress bar for the epoch in progress (``tqdm.auto``: a widget in a notebook)
        when stdout is a terminal or a notebook, else one printed line per epoch; "bar": always
        the bar; "lines": one line per epoch; False or None: nothing printed. With the bar,
        each finished epoch still leaves its full line (loss, metrics, validation numbers).
    verbose : "auto", 0, 1 or 2, optional
        Keras' spelling of ``progress``: 0 silent, 1 the bar, 2 one line per epoch, "auto" as
        ``progress=True``. Give one of the two.
    checkpoint : path, optional
        Save (atomically, through :func:`arrayprop.checkpoint.save`) every ``checkpoint_every``
        epochs, at the end, and when interrupted. A missing directory is created, and one that
        cannot be written is refused, before training starts.
    resume : bool
        Continue from ``checkpoint`` if that file exists (else start afresh).
    max_device_bytes : int, optional
        Budget for the device copy of host data (default :data:`DEFAULT_MAX_DEVICE_BYTES`).
        Larger data sets (a ``numpy.memmap`` bigger than memory) go to the device in chunks of
        the shuffled order, sized so that everything the data takes while training (the chunks
        in flight, their host copies, the NaN/inf scan, the order) stays within the budget.
        The model and its activations are not counted.
    schedule : Schedule, optional
        A learning-rate schedule of ``optimizer`` (:mod:`arrayprop.optim.schedules`); its state
        goes into the checkpoint.
    schedule_interval : "epoch" or "step"
        When ``schedule`` steps: after every epoch (the default; give ``T_max``, ``step_size``
        in epochs) or after every optimizer update (give them, and a warm-up's
        ``warmup_steps``, in iterations: ``epochs * ceil(n / batch_size)`` in all).
    validation_split : float in (0, 1), optional
        Hold out this fraction of (x, y) as validation data, as Keras does: the *last* rows,
        taken before any shuffling (shuffle data that is sorted, e.g. by class, first). Not
        together with ``validation_data``.
    sample_weight : array, shape (n,), optional
        A non-negative weight per sample (host or the model's backend), batched with x and y
        and passed to the loss (``loss.value_and_grad(pred, target, sample_weight=wb)``, eq. 15a
        of docs/math.md): each batch's loss is the weighted mean, so with ``batch_size=None``
        a weight of 2 trains exactly as the sample listed twice. The logged ``loss`` is the mean
        of the batches' weighted losses (weighted by batch size); validation stays unweighted.
    blas_threads : "auto", int or None
        Threads of NumPy's BLAS while training on the numpy and array_api_strict backends
        (restored afterwards): an int limits them, None leaves them as they are, and ``"auto"``
        uses 1 when the model's largest product (batch x in x out) is below
        :data:`arrayprop.backends.threads.SMALL_GEMM` multiply-adds, unless the environment
        says otherwise (``ARRAYPROP_BLAS_THREADS=auto|off|N``, or ``OPENBLAS_NUM_THREADS``
        and the like already set). The number used is ``history.blas_threads``.
    distributed : bool
        Data-parallel training under an MPI launcher (``mpirun -n 4 python script.py``): every
        rank passes the same model and the whole data set, and trains on its shard of every
        global batch of ``batch_size`` rows; one all-reduce per step sums the gradients, so the
        weights equal those of one process on the same global batches. Progress and
        checkpoints are rank 0's; see docs/distributed.md.

    Returns
    -------
    History
        Per-epoch loss, metrics, validation numbers, samples/s, time, lr and the gradient
        norms of the model's weights (named by :meth:`~arrayprop.Layer.named_parameters`).

    Raises
    ------
    ShapeError, DataError, NonFiniteError, LabelError
        Bad data, found before training starts.
    ValueError
        For non-positive ``epochs``, ``batch_size``, ``checkpoint_every``; ``sample_weight``
        with a loss that takes none (``Loss.takes_sample_weight``).
    OSError
        When the directory of ``checkpoint`` cannot be created or written, before training.
    DistributedError
        With ``distributed=True``: ranks holding different models or settings (named), or a
        loss the ranks cannot combine exactly (RMSE).
    DivergenceError
        When the loss or the weights become NaN/inf (the model keeps its last finite weights).
    """
    be = model_backend(model, "fit")
    # MPI first: from here an error on one rank ends every rank (not a hang in a collective).
    world = init_distributed() if check_argument("fit", "distributed", distributed) else None
    epochs = check_argument("fit", "epochs", epochs)
    checkpoint_every = check_argument("fit", "checkpoint_every", checkpoint_every)
    if batch_size is not None:
        batch_size = check_argument("fit", "batch_size", batch_size)
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path")
    if checkpoint is not None:
        # Refused now, not after the first epoch: a model the checkpoint could not rebuild, or
        # a place where it cannot be written (a missing directory is created).
        check_rebuildable(model, Path(checkpoint))
        prepare_directory(Path(checkpoint).parent, "fit: checkpoint")
    loss = get_loss(loss)
    if sample_weight is not None and not loss.takes_sample_weight:
        raise ValueError(
            f"fit: sample_weight was given but the loss {loss!r} takes none "
            "(Loss.takes_sample_weight is False)"
        )
    if sample_weight is not None and world is not None:
        raise ValueError(
            "fit: sample_weight is not supported with distributed=True yet (each rank's "
            "weighted mean would need the global weight sum); train without it or on one process"
        )
    optimizer = resolve_optimizer(optimizer, model)
    if schedule is not None and getattr(schedule, "optimizer", None) is not optimizer:
        raise ValueError("fit: schedule must be built on the optimizer passed to fit")
    ms = resolve_metrics(metrics, loss)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks: {cb!r} is not an arrayprop Callback")
    schedule_interval = check_argument("fit", "schedule_interval", schedule_interval)
    if validation_split is not None:
        validation_split = check_argument("fit", "validation_split", validation_split)
        if validation_data is not None:
            raise ValueError("fit: give validation_data or validation_split, not both")
        x, y, validation_data, sample_weight = split_tail(x, y, validation_split, sample_weight)
    warn_double_softmax(model, loss)
    budget = _budget("fit", max_device_bytes)
    expect = expected_data(model, loss)
    train = prepare(be, x, y, expect, what="fit", budget=budget, sample_weight=sample_weight)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = validation_data
        val = prepare(be, x_val, y_val, expect, what="validation_data", budget=budget)
    batch = train.n if batch_size is None else min(batch_size, train.n)
    if shuffle and train.order_exceeds_budget():
        warnings.warn(
            f"fit: the shuffled order of {train.n} samples takes {8 * train.n} bytes, more than "
            f"max_device_bytes={budget}; the data chunks keep half the budget, so a shuffled "
            "epoch holds more than the budget: raise max_device_bytes or pass shuffle=False",
            UserWarning,
            stacklevel=2,
        )
    threads = choose_blas_threads(
        blas_threads,
        largest_gemm(model, batch, tuple(train.x.shape[1:])) if be.uses_numpy_blas else None,
    )
    display = make_display(progress, epochs, verbose)
    if world is not None and not world.leader:  # progress and checkpoints are rank 0's
        display = make_display(None, epochs)
        callbacks = [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]
    run = Run(
        model,
        loss,
        optimizer,
        ms,
        train,
        val,
        batch,
        bool(shuffle),
        host_rng(seed),
        epochs,
        display,
        callbacks,
        checkpoint,
        checkpoint_every,
        schedule,
        schedule_interval=schedule_interval,
        refresh_seconds=REFRESH_SECONDS,
        window_steps=WINDOW_STEPS,
    )
    run.random_seed = stream_seed(seed)
    model.assign_names()
    if resume and os.path.exists(checkpoint):
        restore_run(run, checkpoint)
    if world is not None:
        settings = {"n": train.n, "batch_size": batch, "epochs": epochs, "shuffle": bool(shuffle)}
        settings.update(epoch=run.epoch_done, step=run.step, optimizer=repr(optimizer))
        data_parallel(run, world, settings=settings)
    model.stop_training = False
    for cb in callbacks:
        cb.set_context(model, optimizer)
        cb.on_train_begin(
            {"epochs": epochs, "samples": train.n, "batch_size": batch, "log_keys": run.log_keys()}
        )
    try:
        # fit detects a non-finite loss itself (DivergenceError), so the floating-point
        # warnings a diverging step raises on the way (NumPy) would only be noise.
        # (targets_checked: prepare() checked the targets of every batch already.)
        with (
            defer_sigint(run.stop),
            be.float_errors_ignored(),
            targets_checked(),
            be.blas_threads_limited(threads),
        ):
            while run.epoch_done < epochs:
                for cb in callbacks:
                    cb.on_epoch_begin(run.epoch_done + 1)
                logs = run.run_epoch()  # steps an epoch schedule too, with the epoch's record
                stop = False
                for cb in callbacks:
                    stop = bool(cb.on_epoch_end(run.epoch_done, logs)) or stop
                stop = stop or bool(getattr(model, "stop_training", False))
                run.history.stopped_early = stop and run.epoch_done < epochs
                ending = stop or run.stop.requested or run.epoch_done == epochs
                if ending or run.epoch_done % checkpoint_every == 0:
                    save_run(run)
                if stop or run.stop.requested:
                    break
    except KeyboardInterrupt:
        run.history.interrupted = True
        if run.torn:
            # Interrupted inside optimizer.step() by code (a real Ctrl-C waits for the step):
            # the parameters may hold part of an update, which no checkpoint may record.
            kept = f"; {checkpoint} keeps the last complete state" if checkpoint else ""
            warnings.warn(
                "fit: interrupted inside optimizer.step(): the model may hold part of an "
                f"update, so no checkpoint was written{kept}",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            if run.step:
                run.read()  # the partial epoch's sums, and a last divergence check
            save_run(run)
    finally:
        display.close()
    if world is not None:
        world.barrier()  # rank 0's last checkpoint is on disk before any rank goes on
    history = run.history
    history.interrupted = history.interrupted or run.stop.requested
    history.blas_threads = threads if be.uses_numpy_blas else None
    for cb in callbacks:
        cb.on_train_end(history.last())
    return history
