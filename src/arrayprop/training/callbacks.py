"""What :func:`~arrayprop.fit` reports and who it reports to: History, callbacks, progress.

- :class:`History` is the per-epoch record ``fit`` returns: training and validation loss and
  metrics, samples/s, wall time, learning rate and the norm of each weight's gradient.
- A :class:`Callback` hears ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end`` and
  ``on_train_end``; ``on_epoch_end`` returning True (or setting ``model.stop_training = True``)
  ends training after that epoch. :class:`EarlyStopping`, :class:`ModelCheckpoint` and
  :class:`LambdaCallback` are the built-in ones.
- :class:`ProgressBar` (a tqdm bar per epoch) and :class:`EpochLog` (one printed line per epoch)
  display progress; ``fit`` picks one from its ``progress`` argument.

Epochs are numbered from 1 everywhere. Callbacks run on the host once per epoch, after the
epoch's one device→host read, so they never add a sync to the training steps.
"""

from __future__ import annotations

import contextlib
import math
import os
import string
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from arrayprop import checkpoint
from arrayprop.nn.layer import state_backend
from arrayprop.validation import NON_NEGATIVE, POSITIVE_INT, Interval, Options, check

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochLog",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "ProgressBar",
    "prepare_directory",
]


def _json_value(value: Any) -> Any:
    """Floats as floats (non-finite ones as None), lists recursively; JSON has no NaN."""
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class History:
    """The per-epoch record of a :func:`~arrayprop.fit` run.

    Every key of the epoch logs is a list with one entry per epoch, readable as an attribute:
    ``history.loss``, ``history.accuracy``, ``history.val_loss``, ``history.samples_per_s``,
    ``history.time`` (seconds), ``history.lr`` and ``history.grad_norm`` (per epoch, a list with
    the Frobenius norm ‖∂C/∂W‖ of the gradient of each weight — every parameter with two axes
    or more — at the epoch's last step, in the order of :attr:`layers`; a deep sigmoid net shows
    vanishing gradients as norms that shrink towards the input).

    Attributes
    ----------
    history : dict of str to list
        The raw record.
    epochs : list of int
        The epoch numbers recorded (from 1; a resumed run continues the numbering).
    layers : list of str
        Dotted names of the weights whose gradient norms are recorded, as
        :meth:`~arrayprop.Layer.named_parameters` gives them, e.g. ``"0.weight"``.
    interrupted : bool
        True when training ended on a KeyboardInterrupt.
    stopped_early : bool
        True when a callback ended training before the last epoch.
    blas_threads : int or None
        The limit ``fit`` put on NumPy's BLAS threads (``fit(blas_threads=...)``); None when it
        left them as they were.
    """

    def __init__(self, layers: list[str] | None = None, keys: Iterable[str] = ()) -> None:
        # The keys a run will record exist from the start: history.loss is [] (not an
        # AttributeError) after a run interrupted in its first epoch.
        self.history: dict[str, list[Any]] = {key: [] for key in keys}
        self.epochs: list[int] = []
        self.layers: list[str] = list(layers or [])
        self.interrupted = False
        self.stopped_early = False
        self.blas_threads: int | None = None

    def record(self, epoch: int, logs: dict[str, Any]) -> None:
        """Append one epoch's logs; a key first seen now gets None for the earlier epochs."""
        for key, value in logs.items():
            column = self.history.setdefault(key, [None] * len(self.epochs))
            column.append(value)
        for key, column in self.history.items():
            if key not in logs:
                column.append(None)
        self.epochs.append(int(epoch))

    def __getattr__(self, name: str) -> list[Any]:
        history = self.__dict__.get("history", {})
        if name in history:
            return history[name]
        raise AttributeError(
            f"History has no {name!r}; recorded: {', '.join(history) or 'nothing yet'}"
        )

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epochs)}, keys={list(self.history)})"

    def last(self) -> dict[str, Any]:
        """The logs of the last recorded epoch (empty before the first)."""
        if not self.epochs:
            return {}
        return {key: column[-1] for key, column in self.history.items()}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (non-finite numbers become None) that :meth:`from_dict` reads."""
        return {
            "epochs": list(self.epochs),
            "layers": list(self.layers),
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "history": {key: _json_value(column) for key, column in self.history.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a History from :meth:`as_dict` (e.g. out of a checkpoint)."""
        history = cls(layers=data.get("layers"))
        history.epochs = [int(e) for e in data.get("epochs", [])]
        history.history = {k: list(v) for k, v in data.get("history", {}).items()}
        history.interrupted = bool(data.get("interrupted", False))
        history.stopped_early = bool(data.get("stopped_early", False))
        return history


class Callback:
    """Base class of the hooks :func:`~arrayprop.fit` calls once per epoch.

    ``fit`` calls :meth:`set_context` first, so :attr:`model` and :attr:`optimizer` are set in
    every hook. ``logs`` holds the epoch's numbers (``loss``, ``accuracy``, ``val_loss``, ...,
    as host floats).
    """

    model: Any = None
    optimizer: Any = None

    def set_context(self, model: Any, optimizer: Any) -> None:
        self.model = model
        self.optimizer = optimizer

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Before epoch ``epoch`` (from 1)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        """After epoch ``epoch``; return True to stop training."""
        return None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """After the last epoch, also when training stops early or is interrupted."""


def _xp(model: Any) -> Any:
    """The namespace of the model's arrays (a user's layer holding others has no ``backend`` of
    its own: then that of its first parameter)."""
    be = getattr(model, "backend", None)
    return (be if be is not None else state_backend(model)).xp


def _copy_weights(model: Any) -> list[Any]:
    xp = _xp(model)
    return [xp.asarray(p.data, copy=True) for p in model.parameters()]


def _set_weights(model: Any, weights: list[Any]) -> None:
    xp = _xp(model)
    for p, w in zip(model.parameters(), weights, strict=True):
        p.data = xp.asarray(w, copy=True)


#: What the arguments of :class:`EarlyStopping` may be.
EARLY_STOPPING = {
    "patience": Interval(int, 0, None),
    "min_delta": NON_NEGATIVE,
    "mode": Options(("auto", "min", "max")),
}


class EarlyStopping(Callback):
    """Stop when a monitored quantity has stopped improving.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs, e.g. ``"val_loss"`` (default), ``"loss"``, ``"val_accuracy"``.
    patience : int
        Stop after this many epochs in a row without improvement (0 and 1 both stop at the
        first one), as in Keras.
    min_delta : float
        An improvement must beat the best value by more than this.
    mode : {"auto", "min", "max"}
        Whether smaller or larger is better; ``"auto"`` takes larger for accuracies.
    restore_best_weights : bool
        At the end of training (early or not) put back the weights of the best epoch (a copy
        kept on the device).

    Attributes
    ----------
    best : float
        The best value seen.
    best_epoch : int or None
        The epoch it was seen at.
    stopped_epoch : int or None
        The epoch after which this callback stopped training.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        patience = check("EarlyStopping", "patience", patience, EARLY_STOPPING["patience"])
        min_delta = check("EarlyStopping", "min_delta", min_delta, EARLY_STOPPING["min_delta"])
        mode = check("EarlyStopping", "mode", mode, EARLY_STOPPING["mode"])
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._best_weights: list[Any] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(
                f"EarlyStopping: monitor {self.monitor!r} is not in the epoch logs "
                f"({', '.join(sorted(logs))}); pass validation_data for val_* keys"
            )
        value = float(value)
        if math.isfinite(value) and self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = _copy_weights(self.model)
            return None
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            return True
        return None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            _set_weights(self.model, self._best_weights)


def prepare_directory(directory: str | os.PathLike[str], whose: str) -> None:
    """Create ``directory`` (and its parents) if missing, and check that a file can be created
    in it, before training: a run must not end by failing to save.

    Raises
    ------
    OSError
        Naming ``whose``, the directory and the reason (read-only, no permission, a file in the
        way).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".arrayprop-probe-")
    except OSError as exc:
        raise OSError(
            exc.errno, f"{whose}: cannot write in {str(directory)!r} ({exc.strerror or exc})"
        ) from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


class ModelCheckpoint(Callback):
    """Save the model (and the optimizer's state) every ``every`` epochs.

    Uses :func:`arrayprop.checkpoint.save`, which writes atomically: an interrupted save never
    leaves a truncated file behind.

    Parameters
    ----------
    path : str or os.PathLike
        Where to save; ``{epoch}`` and any log key in it are filled in, e.g.
        ``"ckpt/epoch{epoch:03d}-{val_loss:.3f}.npz"``. A path without fields is overwritten.
        Missing directories are created. When :func:`~arrayprop.fit` starts, a field that its
        epoch logs will not have (``{val_loss}`` without validation data, a misspelt key), a
        bad format or a directory that cannot be written is refused, before training.
    every : int
        Save after every ``every``-th epoch.
    """

    def __init__(self, path: Any, every: int = 1) -> None:
        self.path = path
        self.every = check("ModelCheckpoint", "every", every, POSITIVE_INT)
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        keys = (logs or {}).get("log_keys")
        template = str(self.path)
        if keys is not None:
            values = {k: 0.5 for k in keys if k != "grad_norm"}
            try:
                names = {
                    f.split(".")[0].split("[")[0]
                    for _, f, _, _ in string.Formatter().parse(template)
                    if f is not None
                }
            except ValueError as exc:
                raise ValueError(
                    f"ModelCheckpoint: path {template!r} is not a format ({exc})"
                ) from None
            unknown = sorted(names - {"epoch", *values})
            if unknown:
                raise ValueError(
                    f"ModelCheckpoint: path {template!r} names {{{unknown[0]}}}, which the epoch "
                    f"logs will not have; they have epoch, {', '.join(values)} (val_* keys need "
                    "validation_data)"
                )
            try:
                template.format(epoch=1, **values)
            except (ValueError, IndexError, KeyError) as exc:
                raise ValueError(
                    f"ModelCheckpoint: path {template!r} does not format ({exc!r}); write "
                    "fields as {epoch:03d} or {val_loss:.3f}"
                ) from None
        fixed = Path(template).parent
        if "{" not in str(fixed):
            prepare_directory(fixed, "ModelCheckpoint")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        if epoch % self.every:
            return None
        fields = {k: v for k, v in logs.items() if not isinstance(v, list)}
        path = str(self.path).format(epoch=epoch, **fields)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(
            self.model,
            path,
            optimizer=self.optimizer,
            extra={"epoch": epoch, "logs": {k: _json_value(v) for k, v in logs.items()}},
        )
        self.saved.append(path)
        return None


class LambdaCallback(Callback):
    """A callback made of plain functions.

    Parameters
    ----------
    on_epoch_end : callable ``(epoch, logs) -> bool | None``, optional
        Called after every epoch; returning True stops training.
    on_train_begin, on_train_end : callable ``(logs) -> None``, optional
    on_epoch_begin : callable ``(epoch) -> None``, optional
    """

    def __init__(
        self,
        on_epoch_end: Callable[[int, dict[str, Any]], bool | None] | None = None,
        *,
        on_train_begin: Callable[[dict[str, Any] | None], None] | None = None,
        on_epoch_begin: Callable[[int], None] | None = None,
        on_train_end: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        self._epoch_end = on_epoch_end
        self._train_begin = on_train_begin
        self._epoch_begin = on_epoch_begin
        self._train_end = on_train_end

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._train_begin is not None:
            self._train_begin(logs)

    def on_epoch_begin(self, epoch: int) -> None:
        if self._epoch_begin is not None:
            self._epoch_begin(epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        return None if self._epoch_end is None else self._epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._train_end is not None:
            self._train_end(logs)


# -- progress display -----------------------------------------------------------------------


def format_logs(logs: dict[str, Any]) -> str:
    """``loss 0.1234, accuracy 0.9650, val_loss ..., 52,310 samples/s, 0.52 s``."""
    parts = []
    for key, value in logs.items():
        if key in ("samples_per_s", "time", "lr", "grad_norm", "epoch") or value is None:
            continue
        parts.append(f"{key} {value:.4f}")
    if logs.get("samples_per_s") is not None:
        parts.append(f"{logs['samples_per_s']:,.0f} samples/s")
    if logs.get("time") is not None:
        parts.append(f"{logs['time']:.2f} s")
    return ", ".join(parts)


class EpochLog:
    """Prints one line per epoch: ``epoch 3/10: loss 0.1234, accuracy 0.9650, ...``."""

    #: fit() reads the running loss back only at the end of an epoch with this display.
    refreshes = False

    def __init__(self, epochs: int, file: TextIO | None = None) -> None:
        self.epochs = epochs
        self.file = file

    def begin(self, epoch: int, samples: int, done: int = 0) -> None:
        """Start epoch ``epoch`` of ``samples`` samples, ``done`` of them already trained."""

    def update(self, done: int, loss: float) -> None:
        """``done`` samples trained so far this epoch; ``loss`` is their running mean."""

    def end(self, epoch: int, logs: dict[str, Any]) -> None:
        print(f"epoch {epoch}/{self.epochs}: {format_logs(logs)}", file=self.file or sys.stdout)

    def close(self) -> None:
        """Release the display (after the last epoch, or when training is interrupted)."""


class ProgressBar(EpochLog):
    """A tqdm bar for the epoch in progress (running loss, samples/s), refreshed by fit().

    When the epoch ends the bar is cleared and the epoch's full line is printed as
    :class:`EpochLog` prints it, so every finished epoch's numbers stay readable whatever the
    terminal's width (a bar's postfix is cut at the right margin). ``tqdm.auto`` draws a widget
    in a notebook and a text bar elsewhere.
    """

    refreshes = True

    def __init__(self, epochs: int, file: TextIO | None = None) -> None:
        super().__init__(epochs, file)
        self._bar = None

    def begin(self, epoch: int, samples: int, done: int = 0) -> None:
        from tqdm.auto import tqdm

        self.close()
        self._bar = tqdm(
            total=samples,
            initial=done,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="sample",
            unit_scale=True,
            file=self.file or sys.stdout,
            dynamic_ncols=True,
            mininterval=0.0,
            leave=False,
        )

    def update(self, done: int, loss: float) -> None:
        bar = self._bar
        if bar is not None:
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            bar.update(done - bar.n)

    def end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.close()
        super().end(epoch, logs)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
