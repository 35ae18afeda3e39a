"""History, callbacks and progress display."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.training.callbacks import EpochLog, format_logs

pytest.importorskip("arrayprop.checkpoint")


def _data(n=200, seed=0):
    (x, y), (xv, yv) = ap.data.load_digits(seed=seed)
    return x[:n], y[:n], xv[:150], yv[:150]


def _weights(model):
    return [model.backend.to_host(p.data).copy() for p in model.parameters()]


# -- History ----------------------------------------------------------------------------------


def test_history_record_and_attributes():
    h = ap.History(layers=["0: Dense(2, 3)"])
    h.record(1, {"loss": 1.0, "grad_norm": [0.5]})
    h.record(2, {"loss": 0.5, "val_loss": 0.7, "grad_norm": [0.25]})
    assert h.epochs == [1, 2]
    assert h.loss == [1.0, 0.5]
    assert h.val_loss == [None, 0.7]  # first seen at epoch 2
    assert h.grad_norm == [[0.5], [0.25]]
    assert h.last() == {"loss": 0.5, "grad_norm": [0.25], "val_loss": 0.7}
    assert len(h) == 2
    with pytest.raises(AttributeError, match=r"History has no 'accuracy'; recorded: loss"):
        _ = h.accuracy


def test_history_as_dict_is_strict_json_and_round_trips():
    h = ap.History(layers=["0: Dense(2, 3)"])
    h.record(1, {"loss": math.nan, "grad_norm": [math.inf], "samples_per_s": 10.0})
    d = h.as_dict()
    text = json.dumps(d, allow_nan=False)  # NaN / inf became null
    back = ap.History.from_dict(json.loads(text))
    assert back.epochs == [1]
    assert back.loss == [None]
    assert back.grad_norm == [[None]]
    assert back.layers == ["0: Dense(2, 3)"]


def test_fit_history_as_dict_is_json():
    x, y, xv, yv = _data(64)
    m = ap.mlp([64, 8, 10], seed=0, backend="numpy")
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=2,
        validation_data=(xv, yv),
        progress=None,
    )
    d = json.loads(json.dumps(h.as_dict(), allow_nan=False))
    assert d["epochs"] == [1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "samples_per_s", "time", "lr"):
        assert len(d["history"][key]) == 2, key
    assert d["layers"] == ["0.weight", "2.weight"]


# -- EarlyStopping ----------------------------------------------------------------------------


def test_early_stopping_logic_without_fit():
    m = ap.mlp([2, 2], seed=0, backend="numpy")
    es = ap.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.01)
    es.set_context(m, None)

    def run(seq):
        es.on_train_begin()
        return [es.on_epoch_end(e, {"val_loss": v}) for e, v in enumerate(seq, start=1)]

    # 0.795 does not beat 0.8 by more than min_delta: two misses in a row stop at epoch 4
    assert run([1.0, 0.8, 0.795, 0.9]) == [None, None, None, True]
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.8, 2, 4)
    # an improvement (0.65 < 0.7 - 0.01) resets the count; on_train_begin resets everything
    assert run([1.0, 0.7, 0.71, 0.65, 0.66, 0.67]) == [None, None, None, None, None, True]
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.65, 4, 6)
    # NaN never counts as an improvement
    assert run([1.0, math.nan, math.nan]) == [None, None, True]


def test_early_stopping_max_mode_for_accuracy_and_missing_key():
    es = ap.EarlyStopping(monitor="val_accuracy")
    assert es.mode == "max"
    es.on_train_begin()
    assert es.on_epoch_end(1, {"val_accuracy": 0.5}) is None
    assert es.on_epoch_end(2, {"val_accuracy": 0.4}) is True  # patience 0: first miss stops
    with pytest.raises(KeyError, match="monitor 'val_accuracy' is not in the epoch logs"):
        es.on_epoch_end(3, {"loss": 1.0})
    with pytest.raises(ValueError, match="patience"):
        ap.EarlyStopping(patience=-1)


def test_early_stopping_restores_best_weights_in_fit():
    # Few training samples and a large step size: validation loss gets worse after a while.
    x, y, xv, yv = _data(60)
    m = ap.mlp([64, 32, 10], seed=1, dtype="float64", backend="numpy")
    seen = {}

    def record(epoch, logs):
        seen[epoch] = (logs["val_loss"], _weights(m))

    es = ap.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    opt = ap.SGD(m.parameters(), lr=0.5, momentum=0.9)
    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=40,
        batch_size=8,
        seed=0,
        validation_data=(xv, yv),
        callbacks=[ap.LambdaCallback(record), es],
        progress=None,
    )
    best_epoch = min(seen, key=lambda e: seen[e][0])
    assert h.stopped_early and len(h) < 40
    assert es.best_epoch == best_epoch
    assert best_epoch < h.epochs[-1] - 2  # the restore really goes back in time
    for got, want in zip(_weights(m), seen[best_epoch][1], strict=True):
        np.testing.assert_array_equal(got, want)
    # evaluate agrees with the recorded best validation loss
    assert ap.evaluate(m, xv, yv, loss="softmax-ce")["loss"] == pytest.approx(
        seen[best_epoch][0], rel=1e-9
    )


# -- LambdaCallback / stop ---------------------------------------------------------------------


def test_lambda_callback_hooks_and_stop():
    x, y, _, _ = _data(64)
    m = ap.mlp([64, 8, 10], seed=0, backend="numpy")
    calls = []
    cb = ap.LambdaCallback(
        lambda e, logs: calls.append(("end", e, sorted(logs))) or e == 2,
        on_train_begin=lambda logs: calls.append(("begin", logs["samples"])),
        on_epoch_begin=lambda e: calls.append(("epoch", e)),
        on_train_end=lambda logs: calls.append(("train_end", logs["loss"])),
    )
    h = ap.fit(m, x, y, loss="softmax-ce", optimizer="sgd", epochs=5, callbacks=[cb], progress=None)
    assert h.epochs == [1, 2] and h.stopped_early
    assert calls[0] == ("begin", 64)
    assert calls[1] == ("epoch", 1)
    assert calls[2][:2] == ("end", 1) and "loss" in calls[2][2] and "accuracy" in calls[2][2]
    assert calls[-1] == ("train_end", h.loss[-1])


def test_model_stop_training_flag():
    x, y, _, _ = _data(64)
    m = ap.mlp([64, 8, 10], seed=0, backend="numpy")

    def stop(epoch, logs):
        m.stop_training = epoch == 3

    h = ap.fit(
        m,
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=9,
        callbacks=[ap.LambdaCallback(stop)],
        progress=None,
    )
    assert h.epochs == [1, 2, 3]


def test_callbacks_must_be_callbacks():
    x, y, _, _ = _data(16)
    with pytest.raises(TypeError, match="is not an arrayprop Callback"):
        ap.fit(
            ap.mlp([64, 10], backend="numpy"),
            x,
            y,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=1,
            callbacks=[lambda e, logs: None],
            progress=None,
        )


# -- ModelCheckpoint ---------------------------------------------------------------------------


def test_model_checkpoint_every_n_epochs(tmp_path):
    from arrayprop import checkpoint

    x, y, _, _ = _data(64)
    m = ap.mlp([64, 8, 10], seed=0, dtype="float64", backend="numpy")
    seen = {}
    rec = ap.LambdaCallback(lambda e, logs: seen.__setitem__(e, _weights(m)))
    mc = ap.ModelCheckpoint(tmp_path / "ep{epoch}-{loss:.3f}.npz", every=2)
    opt = ap.SGD(m.parameters(), lr=0.1, momentum=0.5)
    h = ap.fit(
        m, x, y, loss="softmax-ce", optimizer=opt, epochs=5, callbacks=[rec, mc], progress=None
    )
    assert [p.split("/")[-1].split("-")[0] for p in mc.saved] == ["ep2", "ep4"]
    assert mc.saved[0].endswith(f"-{h.loss[1]:.3f}.npz")
    for path, epoch in zip(mc.saved, (2, 4), strict=True):
        ck = checkpoint.load(path, backend="numpy")
        assert ck.extra["epoch"] == epoch
        assert ck.optimizer_state is not None
        for p, want in zip(ck.model.parameters(), seen[epoch], strict=True):
            np.testing.assert_array_equal(p.data, want)
    with pytest.raises(ValueError, match="every"):
        ap.ModelCheckpoint(tmp_path / "x.npz", every=0)


# -- progress display --------------------------------------------------------------------------


def test_format_logs():
    text = format_logs(
        {
            "loss": 0.12345,
            "accuracy": 0.5,
            "val_loss": 0.25,
            "lr": 0.1,
            "grad_norm": [1.0],
            "samples_per_s": 12345.6,
            "time": 0.5,
        }
    )
    assert text == "loss 0.1235, accuracy 0.5000, val_loss 0.2500, 12,346 samples/s, 0.50 s"


@pytest.mark.parametrize("how", [{"progress": "lines"}, {"verbose": 2}])
def test_lines_print_one_line_per_epoch(capsys, how):
    x, y, _, _ = _data(64)
    h = ap.fit(
        ap.mlp([64, 8, 10], seed=0, backend="numpy"),
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=3,
        **how,
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3: loss ")
    assert f"loss {h.loss[2]:.4f}, accuracy {h.accuracy[2]:.4f}" in lines[2]
    assert "samples/s" in lines[2]


@pytest.mark.parametrize("how", [{"progress": None}, {"progress": False}, {"verbose": 0}])
def test_silent_displays_print_nothing(capsys, how):
    x, y, xv, yv = _data(32)
    ap.fit(
        ap.mlp([64, 10], seed=0, backend="numpy"),
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=2,
        validation_data=(xv, yv),
        **how,
    )
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("how", [{"progress": "bar"}, {"verbose": 1}])
def test_progress_bar_shows_loss_and_rate(capsys, how):
    x, y, _, _ = _data(64)
    h = ap.fit(
        ap.mlp([64, 8, 10], seed=0, backend="numpy"),
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=2,
        **how,
    )
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out
    assert "sample/s" in out
    assert f"loss {h.loss[1]:.4f}" in out


def test_progress_bar_leaves_every_finished_epochs_full_line(capsys, monkeypatch):
    """The bar's postfix is cut at the terminal's margin (80 columns lose val_accuracy): each
    finished epoch also prints its whole line, as the line display does."""
    monkeypatch.setenv("COLUMNS", "80")
    x, y, xv, yv = _data(64)
    h = ap.fit(
        ap.mlp([64, 8, 10], seed=0, backend="numpy"),
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=3,
        validation_data=(xv, yv),
        progress="bar",
    )
    out = capsys.readouterr().out
    for e in range(3):
        line = next(s for s in out.splitlines() if s.startswith(f"epoch {e + 1}/3: loss "))
        assert f"val_accuracy {h.val_accuracy[e]:.4f}" in line
        assert f"val_loss {h.val_loss[e]:.4f}" in line


def test_progress_bar_is_tqdm_auto(monkeypatch):
    """tqdm.auto: a widget in a notebook, a text bar elsewhere."""
    import tqdm.auto

    made = []

    class Fake:
        def __init__(self, **kwargs):
            made.append(kwargs)
            self.n, self.total = 0, kwargs["total"]

        def set_postfix_str(self, *a, **k):
            pass

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Fake)
    x, y, _, _ = _data(32)
    ap.fit(
        ap.mlp([64, 10], seed=0, backend="numpy"),
        x,
        y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=2,
        progress="bar",
    )
    assert [m["desc"] for m in made] == ["epoch 1/2", "epoch 2/2"]


def test_progress_true_in_a_notebook_is_the_bar(monkeypatch):
    import sys
    import types

    from arrayprop.training.args import make_display
    from arrayprop.training.callbacks import ProgressBar

    class ZMQInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = ZMQInteractiveShell
    assert not isinstance(make_display(True, 1), ProgressBar)  # pytest's stdout: no terminal
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert isinstance(make_display(True, 1), ProgressBar)
    fake.get_ipython = lambda: None  # a plain IPython terminal, no kernel
    assert not isinstance(make_display(True, 1), ProgressBar)


@pytest.mark.parametrize(
    "how, match",
    [
        ({"verbose": 3}, r"fit: verbose must be one of 'auto', 0, 1, 2, got 3"),
        ({"verbose": "bar"}, r"fit: verbose must be one of"),
        ({"verbose": 1, "progress": "lines"}, r"fit: give progress or verbose, not both"),
    ],
)
def test_verbose_checked(how, match):
    x, y, _, _ = _data(16)
    with pytest.raises(ValueError, match=match):
        ap.fit(
            ap.mlp([64, 10], backend="numpy"),
            x,
            y,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=1,
            **how,
        )


def test_epoch_log_to_a_file(tmp_path):
    path = tmp_path / "log.txt"
    with open(path, "w") as f:
        log = EpochLog(2, file=f)
        log.end(1, {"loss": 1.0})
    assert path.read_text() == "epoch 1/2: loss 1.0000\n"


def test_progress_value_checked():
    x, y, _, _ = _data(16)
    with pytest.raises(ValueError, match="progress must be"):
        ap.fit(
            ap.mlp([64, 10], backend="numpy"),
            x,
            y,
            loss="softmax-ce",
            optimizer="sgd",
            epochs=1,
            progress="fancy",
        )
