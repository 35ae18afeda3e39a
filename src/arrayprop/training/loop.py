"""The state of one :func:`arrayprop.fit` run: the epoch loop, the window of device losses,
divergence detection and rollback, and the deferred Ctrl-C.

See the module docstring of :mod:`arrayprop.training.api` for how the loop keeps the device
busy. The loop only consumes device batches of :class:`arrayprop.data.adapter.DeviceData`;
checkpoints of a run are written and read by :mod:`arrayprop.training.resume`. Array API only.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from arrayprop.data.adapter import DeviceData
from arrayprop.errors import DivergenceError
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss
from arrayprop.optim.optimizer import Optimizer
from arrayprop.optim.schedules import Schedule
from arrayprop.random import stepping
from arrayprop.training.args import describe, model_backend, named_weights, owner_of
from arrayprop.training.callbacks import Callback, EpochLog, History
from arrayprop.training.evaluation import accumulator_dtype, eval_sums
from arrayprop.training.metrics import Metric


class Stop:
    """Set by the SIGINT handler; the loop checks it between steps.

    ``critical`` is True while the loop applies an update and records it (the optimizer's step
    and the step count, the end of an epoch with its schedule step, the read of the sums): a
    second Ctrl-C landing there sets ``pending`` and is raised once the section is over, so a
    run records the step it applied or none of it.
    """

    requested = False
    critical = False
    pending = False


@contextmanager
def critical(stop: Stop) -> Iterator[None]:
    """Defer a second Ctrl-C to the end of the block (see :class:`Stop`)."""
    stop.critical = True
    try:
        yield
    finally:
        stop.critical = False
    if stop.pending:
        stop.pending = False
        raise KeyboardInterrupt


@contextmanager
def defer_sigint(stop: Stop) -> Iterator[None]:
    """Turn a first Ctrl-C into ``stop.requested`` (a second one interrupts at once).

    Only in the main thread and only over Python's default handler; elsewhere the plain
    KeyboardInterrupt path applies.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            if stop.critical:
                stop.pending = True
                return
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Window:
    """The per-step device scalars since the last read, and their on-device running totals.

    ``totals`` is the device vector [Σ scaled loss, first non-finite step or −1, Σ metric_j ...]
    (steps counted from the last read).
    """

    def __init__(self, xp: Any, acc: Any, n_metrics: int) -> None:
        self.xp = xp
        self.acc = acc
        self.losses: list[Any] = []
        self.metrics: list[list[Any]] = [[] for _ in range(n_metrics)]
        self.totals: Any = None
        self.steps = 0

    def reduce(self) -> None:
        """Sum the listed scalars into ``totals`` on the device (no host copy)."""
        if not self.losses:
            return
        xp, acc = self.xp, self.acc
        v = xp.astype(xp.stack(self.losses), acc)
        bad = ~xp.isfinite(v)
        first = xp.astype(xp.argmax(xp.astype(bad, xp.int32)), acc) + self.steps
        parts = [xp.sum(v), xp.where(xp.any(bad), first, -1.0)]
        parts += [xp.sum(xp.stack(m)) for m in self.metrics]
        new = xp.stack(parts)
        if self.totals is None:
            self.totals = new
        else:
            t = self.totals
            first_bad = xp.where(t[1:2] >= 0, t[1:2], new[1:2])
            self.totals = xp.concat([t[0:1] + new[0:1], first_bad, t[2:] + new[2:]])
        self.steps += len(self.losses)
        self.losses.clear()
        for m in self.metrics:
            m.clear()


class Run:
    """The state of one :func:`arrayprop.fit` call.

    ``refresh_seconds`` and ``window_steps`` are :data:`arrayprop.training.api.REFRESH_SECONDS`
    and :data:`arrayprop.training.api.WINDOW_STEPS`, read by ``fit`` when it starts.
    """

    #: Root of the per-step random stream (``fit``'s seed; see :func:`arrayprop.random.stepping`).
    random_seed: int = 0

    def __init__(
        self,
        model: Layer,
        loss: Loss,
        optimizer: Optimizer,
        metrics: list[Metric],
        train: DeviceData,
        val: DeviceData | None,
        batch: int,
        shuffle: bool,
        rng: Any,
        epochs: int,
        display: EpochLog,
        callbacks: list[Callback],
        checkpoint: Any,
        checkpoint_every: int,
        schedule: Schedule | None,
        *,
        schedule_interval: str = "epoch",
        refresh_seconds: float,
        window_steps: int,
    ) -> None:
        self.model, self.loss, self.optimizer, self.metrics = model, loss, optimizer, metrics
        self.schedule = schedule
        self.schedule_interval = schedule_interval
        self.refresh_seconds, self.window_steps = refresh_seconds, window_steps
        self.be = be = model_backend(model, "fit")
        self.xp = be.xp
        self.acc = accumulator_dtype(be)
        self.train, self.val = train, val
        self.batch, self.shuffle, self.rng, self.epochs = batch, shuffle, rng, epochs
        self.display, self.callbacks = display, callbacks
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.named_params = list(model.named_parameters())
        self.params = [p for _, p in self.named_params]
        # The weights (parameters of two axes or more) whose gradient norms History records.
        weights = named_weights(model)
        self.weights = [p for _, p in weights]
        self.steps_per_epoch = -(-train.n // batch)
        self.window = _Window(self.xp, self.acc, len(metrics))
        self.stop = Stop()
        keys = ["loss", *(m.name for m in metrics)]
        if val is not None:
            keys += ["val_loss", *(f"val_{m.name}" for m in metrics)]
        keys += ["lr"] if hasattr(optimizer, "lr") else []
        # Set when an exception left optimizer.step() after it began counting the step: the
        # parameters may hold part of an update, so nothing of it may be recorded.
        self.torn = False
        #: Set by :func:`arrayprop.distributed.data_parallel`: this rank's batches and the
        #: per-step all-reduce (None: one process).
        self.parallel: Any = None
        self.history = History([name for name, _ in weights], [*keys, "samples_per_s", "time"])
        # Position: completed epochs, steps done in the current one, whether that one has
        # begun (its order drawn: the Generator has moved on) and its shuffled order.
        self.epoch_done = 0
        self.step = 0
        self.started = False
        self.order: Any = None
        self._reset_epoch_sums()
        self.snapshot()

    # -- bookkeeping ------------------------------------------------------------------------
    def _reset_epoch_sums(self) -> None:
        self.loss_sum = 0.0  # Σ over steps read so far of loss·B (the last batch: loss·n_b)
        self.metric_sums = [0.0] * len(self.metrics)
        self.window_start = self.step  # step (within the epoch) the window's first entry had
        self.seconds = 0.0

    def snapshot(self) -> None:
        """Keep a device copy of the weights: what a divergence rolls back to."""
        xp = self.xp
        self.finite_weights = [xp.asarray(p.data, copy=True) for p in self.params]
        self.finite_at = (self.epoch_done + 1, self.step) if self.step else (self.epoch_done, 0)

    def read(self, extra: Sequence[Any] = ()) -> list[float]:
        """The one device→host copy: window totals, weight finiteness and ``extra`` vectors."""
        with critical(self.stop):  # the window's sums move to the epoch's all at once
            return self._read(extra)

    def _read(self, extra: Sequence[Any]) -> list[float]:
        xp, acc = self.xp, self.acc
        w = self.window
        w.reduce()
        totals = w.totals
        if totals is None:
            zeros = [0.0, -1.0] + [0.0] * len(self.metrics)
            totals = xp.asarray(zeros, dtype=acc, device=self.be.device)
        finite = xp.stack([xp.all(xp.isfinite(p.data)) for p in self.params])
        ok = xp.reshape(xp.astype(xp.all(finite), acc), (1,))
        host = self.be.to_host(xp.concat([totals, ok, *extra])).tolist()
        steps, w.totals, w.steps = w.steps, None, 0
        first_bad, weights_ok = host[1], host[2 + len(self.metrics)]
        if first_bad >= 0 or weights_ok != 1.0:
            bad_step = self.window_start + (int(first_bad) if first_bad >= 0 else steps - 1)
            self._diverged(bad_step, loss_bad=first_bad >= 0)
        self.loss_sum += host[0] * self.batch
        for j in range(len(self.metrics)):
            self.metric_sums[j] += host[2 + j]
        self.window_start += steps
        self.snapshot()
        return host[3 + len(self.metrics) :]

    def _diverged(self, bad_step: int, loss_bad: bool) -> None:
        xp, be = self.xp, self.be
        culprit = None
        for name, p in self.named_params:
            g = p.grad
            if g is not None and not bool(be.to_host(xp.all(xp.isfinite(g)))):
                culprit = f"{name} of {describe(owner_of(self.model, name))}"
                break
        for p, w in zip(self.params, self.finite_weights, strict=True):
            p.data, p.grad = w, None
        self.display.close()
        epoch = self.epoch_done + 1
        what = "the loss became NaN/inf" if loss_bad else "the weights became NaN/inf"
        where = culprit or "none (the last step's gradients are finite)"
        at_epoch, at_step = self.finite_at
        restored = (
            f"epoch {at_epoch}, step {at_step}" if at_step else f"the end of epoch {at_epoch}"
        )
        if at_epoch == 0:
            restored = "the start of training"
        err = DivergenceError(
            f"training diverged at epoch {epoch}, step {bad_step + 1} of "
            f"{self.steps_per_epoch}: {what} (lr={getattr(self.optimizer, 'lr', '?')}); first "
            f"parameter with a non-finite gradient at the last step: {where}. The weights were "
            f"restored to those of {restored} (the last finite read); try a smaller learning "
            "rate"
        )
        err.epoch, err.step, err.layer = epoch, bad_step + 1, culprit
        raise err

    # -- one epoch -----------------------------------------------------------------------------
    def log_keys(self) -> list[str]:
        """The keys every epoch's logs will hold (what :meth:`run_epoch` returns)."""
        names = [m.name for m in self.metrics]
        keys = ["loss", *names]
        if self.val is not None:
            keys += ["val_loss", *(f"val_{n}" for n in names)]
        if hasattr(self.optimizer, "lr"):
            keys.append("lr")
        return [*keys, "samples_per_s", "time", "grad_norm"]

    def run_epoch(self) -> dict[str, Any]:
        """Train the current epoch from ``self.step`` on; returns its logs."""
        be, xp, acc = self.be, self.xp, self.acc
        model, loss, optimizer, d = self.model, self.loss, self.optimizer, self.train
        epoch = self.epoch_done + 1
        B, n = self.batch, d.n
        if not self.started:
            # Drawing the order moves the Generator on: recorded together with "started".
            with critical(self.stop):
                self.order = self.rng.permutation(n) if self.shuffle and B < n else None
                self._reset_epoch_sums()
                self.started = True
        t0 = time.perf_counter()
        start_samples = min(self.step * B, n)
        self.display.begin(epoch, n, start_samples)
        forward, backward = model.forward, model.backward
        # A user's model takes backward(grad) only; built-ins also take the speed hints.
        hints = {"inplace": True, "input_grad": False} if model.speed_hints else {}
        value_and_grad, opt_step = loss.value_and_grad, optimizer.step
        per_step = self.schedule.step if self.schedule_interval == "step" else None
        model.train()
        metrics = self.metrics
        losses_append = self.window.losses.append
        metric_lists = self.window.metrics
        window = self.window
        classes = None
        if d.labels:
            classes = xp.arange(d.outputs, dtype=xp.int64, device=be.device)
        dtype = be.dtype
        stop = self.stop
        # A forward in training mode moves the buffers (BatchNorm's running statistics) before
        # the update: an interrupt between the two puts them back, so that a batch counts
        # whole or not at all. Layers give buffers new arrays (never in-place writes), so
        # holding the old ones costs nothing.
        buffers = model.buffers()
        refreshes = self.display.refreshes
        refresh_seconds, window_steps = self.refresh_seconds, self.window_steps
        next_refresh = time.perf_counter() + refresh_seconds
        done = self.step
        weighted = {}
        par = self.parallel
        sync = None if par is None else par.sync
        if par is None:
            batches = d.batches(B, self.order, done * B, weights=True)
        else:  # fit refuses sample_weight with distributed=True
            batches = ((xb, yb, None) for xb, yb in par.batches(B, self.order, done * B))
        try:
            for xb, yb, wb in batches:
                if wb is not None:
                    weighted["sample_weight"] = wb
                held = [b.data for b in buffers]
                try:
                    with stepping(self.random_seed, optimizer.steps):
                        pred = forward(xb)
                        target = yb if classes is None else xp.astype(yb[:, None] == classes, dtype)
                        value, grad = value_and_grad(pred, target, **weighted)
                        sums = [m.batch_sum(xp, pred, yb, acc) for m in metrics]
                        backward(grad, **hints)
                except BaseException:
                    for b, data in zip(buffers, held, strict=True):
                        b.data = data
                    raise
                nb = xb.shape[0]
                if sync is not None:  # the global batch's gradients, loss and sums
                    value, sums, nb = sync(value, sums)
                if nb < B:
                    value = value * (nb / B)  # so that B·Σ values = Σ loss·n_b
                # The update and its record are one: a second Ctrl-C waits for both (Stop).
                stop.critical = True
                counted = optimizer.steps
                try:
                    opt_step()
                    if per_step is not None:
                        per_step()
                except BaseException:
                    stop.critical = False
                    self.torn = optimizer.steps != counted
                    if not self.torn:
                        for b, data in zip(buffers, held, strict=True):
                            b.data = data
                    raise
                losses_append(value)
                for lst, v in zip(metric_lists, sums, strict=True):
                    lst.append(v)
                done += 1
                self.step = done
                stop.critical = False
                if stop.pending:
                    stop.pending = False
                    raise KeyboardInterrupt
                if len(window.losses) >= window_steps:
                    window.reduce()
                if stop.requested:
                    raise KeyboardInterrupt
                if refreshes and time.perf_counter() >= next_refresh:
                    self.step = done
                    self.read()
                    self.display.update(min(done * B, n), self._running_loss(done))
                    next_refresh = time.perf_counter() + refresh_seconds
        finally:
            self.step = done
            self.seconds += time.perf_counter() - t0
        return self._end_epoch(epoch, t0, start_samples)

    def _running_loss(self, done: int) -> float:
        return self.loss_sum / max(min(done * self.batch, self.train.n), 1)

    def _end_epoch(self, epoch: int, t0: float, start_samples: int) -> dict[str, Any]:
        xp, acc = self.xp, self.acc
        t_end = time.perf_counter()
        norms = []
        for p in self.weights:
            g = p.grad
            norms.append(
                xp.asarray(math.nan, dtype=acc, device=self.be.device)
                if g is None
                else xp.sqrt(xp.sum(xp.astype(g, acc) ** 2))
            )
        extra = [xp.stack(norms)] if norms else []
        if self.val is not None:
            vsums = eval_sums(self.model, self.val, self.loss, self.metrics, max(self.batch, 256))
            extra.append(xp.astype(vsums, acc))
        host = self.read(extra)
        seconds = self.seconds + (time.perf_counter() - t_end)
        n = self.train.n
        logs: dict[str, Any] = {"loss": self.loss_sum / n}
        for m, s in zip(self.metrics, self.metric_sums, strict=True):
            logs[m.name] = s / n
        grad_norm = host[: len(norms)]
        if self.val is not None:
            v = host[len(norms) :]
            logs["val_loss"] = v[0] / self.val.n
            for m, s in zip(self.metrics, v[1:], strict=True):
                logs[f"val_{m.name}"] = s / self.val.n
        if hasattr(self.optimizer, "lr"):
            logs["lr"] = float(self.optimizer.lr)
        logs["samples_per_s"] = (n - start_samples) / max(time.perf_counter() - t0, 1e-12)
        logs["time"] = seconds
        logs["grad_norm"] = [None if math.isnan(g) else g for g in grad_norm]
        # The epoch is complete: the position moves to the start of the next one, the History
        # gets its row and the schedule its step, all or none of them.
        with critical(self.stop):
            self.epoch_done, self.step, self.started, self.order = epoch, 0, False, None
            self.history.record(epoch, logs)
            if self.schedule is not None and self.schedule_interval == "epoch":
                self.schedule.step()
        self.display.end(epoch, logs)
        return logs
