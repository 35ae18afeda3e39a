"""Where fit and ModelCheckpoint save: checked when training starts, never at the first save
(a missing directory is created; a field the logs will not have, a bad format or a directory
that cannot be written is refused before the first epoch)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import arrayprop as ap

X = np.random.default_rng(0).standard_normal((12, 3))
Y = np.arange(12) % 2


def _fit(backend, began, validation=False, callbacks=(), **kwargs):
    """Two epochs of a small model; ``began`` collects the epochs that started."""
    ap.fit(
        ap.mlp([3, 4, 2], seed=0, backend=backend),
        X,
        Y,
        loss="softmax-ce",
        optimizer="sgd",
        epochs=2,
        batch_size=4,
        validation_data=(X, Y) if validation else None,
        progress=None,
        callbacks=[*callbacks, ap.LambdaCallback(on_epoch_begin=began.append)],
        **kwargs,
    )


@pytest.mark.parametrize(
    ("template", "validation", "words"),
    [
        ("m{val_acc}.npz", True, "names {val_acc}"),  # misspelt val_accuracy
        ("m{val_loss:.3f}.npz", False, "names {val_loss}"),  # no validation data
        ("m{accuracy:.3f}{bogus}.npz", False, "names {bogus}"),
        ("m{}.npz", False, "names {}"),
        ("m{epoch:.q}.npz", False, "does not format"),
        ("m{epoch.npz", False, "is not a format"),
    ],
)
def test_model_checkpoint_fields_are_checked_before_training(
    backend, tmp_path, template, validation, words
):
    began: list[int] = []
    cb = ap.ModelCheckpoint(str(tmp_path / template))
    with pytest.raises(ValueError, match=re.escape(words)) as exc:
        _fit(backend, began, validation=validation, callbacks=[cb])
    assert began == []  # refused before the first epoch
    assert "ModelCheckpoint" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_model_checkpoint_fields_the_logs_have_pass(backend, tmp_path):
    cb = ap.ModelCheckpoint(str(tmp_path / "m{epoch:02d}-{val_accuracy:.2f}-{lr}.npz"))
    _fit(backend, [], validation=True, callbacks=[cb])
    assert len(cb.saved) == 2


@pytest.mark.parametrize(
    "template", ["runs/deeper/epoch{epoch:03d}.npz", "runs/{epoch}/m.npz"], ids=["fixed", "field"]
)
def test_model_checkpoint_creates_missing_directories(backend, tmp_path, template):
    cb = ap.ModelCheckpoint(str(tmp_path / template))
    _fit(backend, [], callbacks=[cb])
    assert len(cb.saved) == 2
    for path in cb.saved:
        ap.load_checkpoint(path, backend=backend)


def test_fit_checkpoint_creates_its_directory(backend, tmp_path):
    path = tmp_path / "nodir" / "deeper" / "run.npz"
    _fit(backend, [], checkpoint=path)
    assert ap.load_checkpoint(path, backend=backend).extra["fit"]["epoch"] == 2


@pytest.mark.parametrize("kind", ["fit", "ModelCheckpoint"])
def test_an_unwritable_place_is_refused_before_training(backend, tmp_path, kind):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")  # a file where the directory should be: no one can write there
    target = blocker / "run.npz"
    if kind == "fit":
        kwargs = {"checkpoint": target}
    else:
        kwargs = {"callbacks": [ap.ModelCheckpoint(target)]}
    began: list[int] = []
    with pytest.raises(OSError, match=kind) as exc:
        _fit(backend, began, **kwargs)
    assert str(blocker) in str(exc.value)
    assert began == []
