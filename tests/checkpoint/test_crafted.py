"""Crafted checkpoints: a valid file (checksum recomputed, which anyone can do) with one field
edited is refused with ``CheckpointError`` naming that field, never a KeyError, IndexError,
AttributeError or TypeError from inside, never accepted; and NumPy's global random state, the
model and the optimizer given to ``fit(resume=True)`` are left as they were.

Two tables: edits of the checkpoint header and arrays (refused by ``checkpoint.load`` or
``restore_optimizer``), and edits of the run state ``fit`` saves (refused by
``fit(resume=True)``). A mid-epoch checkpoint of a shuffled run (so with its order) is the base.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ckpt
from arrayprop.checkpoint.format import canonical_json, checksum
from arrayprop.errors import CheckpointError
from fitref import CtrlCAt

N, BATCH = 24, 8


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, 4)), rng.integers(0, 3, N)


def _fit(path, *, resume=False, metric=None, epochs=3):
    x, y = _data()
    model = ap.mlp([4, 5, 3], seed=0, backend="numpy")
    opt = ap.Adam(model.parameters(), lr=0.01)
    sched = ap.StepLR(opt, step_size=1, gamma=0.5)
    history = ap.fit(
        model,
        x,
        y,
        loss="softmax-ce",
        optimizer=opt,
        epochs=epochs,
        batch_size=BATCH,
        seed=1,
        progress=None,
        checkpoint=path,
        resume=resume,
        schedule=sched,
        metrics=[metric or CtrlCAt(0)],
    )
    return model, opt, history


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The header and arrays of a checkpoint saved in the middle of epoch 2."""
    path = tmp_path_factory.mktemp("crafted") / "base.npz"
    _, _, history = _fit(path, metric=CtrlCAt(5))
    assert history.interrupted
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    assert header["extra"]["fit"]["started"] and header["extra"]["fit"]["step"] == 2
    assert "extra.fit_order" in arrays
    return header, arrays


def _write(path, header, arrays):
    header = dict(header)
    header["arrays"] = sorted(arrays) if header.get("arrays") != "x" else "x"
    header["checksum"] = checksum(header, arrays)  # recomputed: the file is "valid"
    text = canonical_json(header).replace(b'"@deep@"', b"[" * 100_000 + b"]" * 100_000)
    np.savez(path, header=np.frombuffer(text, dtype=np.uint8), **arrays)
    return path


#: Stands for 100,000 nested lists, spliced into the header's text (too deep to encode).
_DEEP = "@deep@"


def _set(*keys, value):
    """An edit: header[keys...] = value (a key of None deletes)."""

    def edit(header, arrays):
        node = header
        for k in keys[:-1]:
            node = node[k]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value

    return edit


_DELETE = object()


def _array(name, value):
    def edit(header, arrays):
        arrays[name] = value

    return edit


def _order(fn):
    def edit(header, arrays):
        arrays["extra.fit_order"] = fn(arrays["extra.fit_order"].copy())

    return edit


def _both(*edits):
    def edit(header, arrays):
        for e in edits:
            e(header, arrays)

    return edit


def _dup(order):
    order[1] = order[0]
    return order


def _out_of_range(order):
    order[3] = N + 5
    return order


#: (id, edit, the message's field) refused by checkpoint.load (or restore_optimizer).
LOAD_CASES = [
    ("no-dtype", _set("dtype", value=_DELETE), "header field 'dtype'"),
    ("dtype-int32", _set("dtype", value="int32"), "header field 'dtype'"),
    ("dtype-list", _set("dtype", value=["float64"]), "header field 'dtype'"),
    ("arrays-not-a-list", _set("arrays", value="x"), "header field 'arrays'"),
    ("extra-a-list", _set("extra", value=[1, 2]), "header field 'extra'"),
    ("extra-arrays-missing", _set("extra_arrays", value=["fit_order", "ghost"]), "extra.ghost"),
    ("extra-arrays-not-names", _set("extra_arrays", value=[{"a": 1}]), "'extra_arrays'"),
    ("optimizer-a-string", _set("optimizer", value="adam"), "header field 'optimizer'"),
    ("optimizer-state-a-dict", _set("optimizer", "state", value={"0": 1}), "'optimizer.state'"),
    (
        "optimizer-state-missing-array",
        _set("optimizer", "state", 0, value=["ghost"]),
        "optim.0.ghost",
    ),
    (
        "optimizer-state-entry-a-string",
        _set("optimizer", "state", 0, value="exp_avg"),
        "'optimizer.state'",
    ),
    (
        "optimizer-hyper-a-string",
        _set("optimizer", "hyperparameters", value="lr"),
        "'optimizer.hyperparameters'",
    ),
    ("optimizer-steps-a-string", _set("optimizer", "steps", value="3"), "'optimizer.steps'"),
    ("optimizer-type-a-list", _set("optimizer", "type", value=["adam"]), "'optimizer.type'"),
    ("nested-header", _set("extra", "deep", value=_DEEP), "RecursionError"),
    ("state-0d-int-moment", _array("optim.0.exp_avg", np.array(3)), "state 'exp_avg' of param"),
    (
        "state-int-moment",
        _array("optim.0.exp_avg", np.zeros((4, 5), np.int64)),
        "state 'exp_avg' of param",
    ),
    ("state-float-counter", _array("optim.0.step", np.array(2.0)), "state 'step' of param"),
    ("state-negative-counter", _array("optim.0.step", np.array(-2)), "state 'step'"),
    (
        "state-differs-between-params",
        _both(_set("optimizer", "state", 1, value=["step"])),
        "state entries differ between parameters",
    ),
]

#: (id, edit, the message's field) refused by fit(resume=True).
RESUME_CASES = [
    ("fit-not-an-object", _set("extra", "fit", value=5), "fit state must be an object"),
    (
        "rng-np-random-seed",
        _set("extra", "fit", "rng", "bit_generator", value="seed"),
        "fit state field 'rng'",
    ),
    (
        "rng-default-rng",
        _set("extra", "fit", "rng", "bit_generator", value="default_rng"),
        "fit state field 'rng'",
    ),
    (
        "rng-random-state",
        _set("extra", "fit", "rng", "bit_generator", value="RandomState"),
        "fit state field 'rng'",
    ),
    ("rng-bad-contents", _set("extra", "fit", "rng", "state", value="x"), "fit state field 'rng'"),
    ("rng-missing", _set("extra", "fit", "rng", value=_DELETE), "fit state field 'rng'"),
    ("order-out-of-range", _order(_out_of_range), "fit_order must be an order of the 24"),
    ("order-duplicated", _order(_dup), "fit_order must be an order of the 24"),
    ("order-short", _order(lambda o: o[:-1]), "fit_order must be an order of the 24"),
    ("order-float", _order(lambda o: o.astype(float)), "fit_order must be an order of the 24"),
    (
        "order-missing",
        _both(lambda h, a: a.pop("extra.fit_order"), _set("extra_arrays", value=[])),
        "no array fit_order",
    ),
    ("step-beyond-epoch", _set("extra", "fit", "step", value=10**6), "field 'step'"),
    ("step-negative", _set("extra", "fit", "step", value=-1), "field 'step'"),
    ("epoch-a-string", _set("extra", "fit", "epoch", value="1"), "field 'epoch'"),
    ("epoch-negative", _set("extra", "fit", "epoch", value=-3), "field 'epoch'"),
    ("started-a-string", _set("extra", "fit", "started", value="yes"), "field 'started'"),
    ("n-zero", _set("extra", "fit", "n", value=0), "field 'n'"),
    ("batch-a-float", _set("extra", "fit", "batch_size", value=8.0), "field 'batch_size'"),
    ("partial-missing", _set("extra", "fit", "partial", value=_DELETE), "field 'partial'"),
    (
        "metric-sums-strings",
        _set("extra", "fit", "partial", "metric_sums", value=["a"]),
        "'metric_sums'",
    ),
    ("history-a-list", _set("extra", "fit", "history", value=[]), "field 'history'"),
    (
        "history-epochs-strings",
        _set("extra", "fit", "history", "epochs", value=["a"]),
        "field 'history'",
    ),
    ("schedule-a-string", _set("extra", "fit", "schedule", value="cosine"), "field 'schedule'"),
    (
        "schedule-base-lr-a-string",
        _set("extra", "fit", "schedule", "base_lr", value="x"),
        "field 'schedule'",
    ),
]


def _crafted(base, tmp_path, edit):
    header, arrays = copy.deepcopy(base[0]), {k: v.copy() for k, v in base[1].items()}
    edit(header, arrays)
    return _write(tmp_path / "crafted.npz", header, arrays)


def test_the_base_file_rewritten_unedited_resumes(base, tmp_path):
    """The harness itself: rewriting the file without an edit keeps it valid."""
    path = _crafted(base, tmp_path, lambda h, a: None)
    _, _, history = _fit(path, resume=True)
    assert history.epochs == [1, 2, 3] and not history.interrupted


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in LOAD_CASES], ids=[c[0] for c in LOAD_CASES]
)
def test_a_crafted_header_is_refused_naming_the_field(base, tmp_path, edit, field):
    path = _crafted(base, tmp_path, edit)
    before = np.random.get_state()  # noqa: NPY002 - the global state itself
    with pytest.raises(CheckpointError) as info:
        loaded = ckpt.load(path)
        model = loaded.model
        ckpt.restore_optimizer(ap.Adam(model.parameters(), lr=0.01), loaded)
    assert field in str(info.value), str(info.value)
    assert str(path) in str(info.value)
    _assert_same_global_state(before)


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES]
)
def test_a_crafted_run_state_is_refused_naming_the_field(base, tmp_path, edit, field, monkeypatch):
    path = _crafted(base, tmp_path, edit)
    before = np.random.get_state()  # noqa: NPY002 - the global state itself
    x, y = _data()
    model = ap.mlp([4, 5, 3], seed=0, backend="numpy")
    opt = ap.Adam(model.parameters(), lr=0.01)
    sched = ap.StepLR(opt, step_size=1, gamma=0.5)
    weights = [p.data.copy() for p in model.parameters()]
    with pytest.raises(CheckpointError) as info:
        ap.fit(
            model,
            x,
            y,
            loss="softmax-ce",
            optimizer=opt,
            epochs=3,
            batch_size=BATCH,
            seed=1,
            progress=None,
            checkpoint=path,
            resume=True,
            schedule=sched,
            metrics=[CtrlCAt(0)],
        )
    assert field in str(info.value), str(info.value)
    assert str(path) in str(info.value)
    _assert_same_global_state(before)
    # Nothing was restored: the model, the optimizer and the schedule are as built.
    for p, w in zip(model.parameters(), weights, strict=True):
        np.testing.assert_array_equal(p.data, w)
    assert opt.steps == 0 and opt.lr == 0.01 and sched.steps == 0
    assert all(not s for s in opt.state)


def _assert_same_global_state(before):
    after = np.random.get_state()  # noqa: NPY002 - the global state itself
    assert after[0] == before[0] and after[2:] == before[2:]
    np.testing.assert_array_equal(after[1], before[1])
