"""Checkpoints: round trips on every backend, cross-backend loads, optimizer state, atomic
writes, and refusal of truncated, corrupted, foreign, newer and pickled files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ck
from arrayprop.checkpoint import write as ck_write
from arrayprop.errors import CheckpointError

SIZES = [6, 8, 7, 3]


def _model(backend, seed: int = 0, activation: str = "tanh") -> ap.Sequential:
    return ap.mlp(SIZES, activation, seed=seed, backend=backend)


def _host_weights(model) -> list[np.ndarray]:
    return [model.backend.to_host(p.data) for p in model.parameters()]


def _predict(model, x) -> np.ndarray:
    be = model.backend
    return be.to_host(model.predict(be.asarray(np.asarray(x), dtype=be.dtype)))


@pytest.fixture
def x(rng) -> np.ndarray:
    return rng.standard_normal((5, SIZES[0]))


@pytest.fixture
def saved(tmp_path):
    """A float64 NumPy model and the checkpoint file it was saved to."""
    model = _model(ap.get_backend("numpy", dtype="float64"))
    path = tmp_path / "model.npz"
    ck.save(model, path, extra={"epoch": 4, "note": "hi", "mean": np.arange(6.0)})
    return model, path


# -- independent reading / rewriting of the format, to craft edited files -------------------


def _read_raw(path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    return header, arrays


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _independent_checksum(header: dict, arrays: dict[str, np.ndarray]) -> str:
    """The checksum as docs describe it, written out here from scratch."""
    h = hashlib.sha256(_canonical({k: v for k, v in header.items() if k != "checksum"}))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(_canonical([name, a.dtype.str, list(a.shape)]))
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def _write_raw(path, header: dict, arrays: dict[str, np.ndarray], *, rehash: bool = True):
    if rehash:
        header = dict(header, checksum=_independent_checksum(header, arrays))
    members = dict(arrays, header=np.frombuffer(_canonical(header), dtype=np.uint8))
    np.savez(path, **members)


# -- round trips ------------------------------------------------------------------------------


def test_round_trip_on_every_backend(backend, tmp_path, x):
    model = _model(backend)
    path = tmp_path / "m.npz"
    ck.save(model, path)
    loaded = ck.load(path, backend=backend.name)
    assert loaded.model.backend.name == backend.name
    assert loaded.model.backend.dtype_name == "float64"
    for a, b in zip(_host_weights(model), _host_weights(loaded.model), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_predict(model, x), _predict(loaded.model, x))
    assert loaded.optimizer_state is None
    assert loaded.info["backend"] == backend.name
    assert loaded.info["architecture"] == ap.nn.layer_config(model)
    # ... and onto NumPy, whatever it was trained on.
    on_numpy = ck.load(path, backend="numpy").model
    for a, b in zip(_host_weights(model), _host_weights(on_numpy), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("target", ["array_api_strict", "torch"])
def test_numpy_checkpoint_loads_on_another_backend(saved, target, x):
    if target == "torch":
        pytest.importorskip("torch")
    model, path = saved
    loaded = ck.load(path, backend=target)
    assert loaded.model.backend.name == target
    for a, b in zip(_host_weights(model), _host_weights(loaded.model), strict=True):
        np.testing.assert_array_equal(a, b)
    # Same weights; the matrix products may round differently in the last bit on another library.
    np.testing.assert_allclose(
        _predict(loaded.model, x), _predict(model, x), rtol=1e-13, atol=1e-15
    )
    assert (
        np.argmax(_predict(loaded.model, x), 1).tolist()
        == np.argmax(_predict(model, x), 1).tolist()
    )


def test_extra_and_info_round_trip(saved):
    _, path = saved
    loaded = ck.load(path)
    assert loaded.extra["epoch"] == 4
    assert loaded.extra["note"] == "hi"
    np.testing.assert_array_equal(loaded.extra["mean"], np.arange(6.0))
    assert loaded.info["dtype"] == "float64"
    assert loaded.info["version"] == ck.FORMAT_VERSION
    assert loaded.info["path"] == str(path)


def test_extra_arrays_keep_shape_dtype_and_values(tmp_path):
    model = _model(ap.get_backend("numpy", dtype="float64"))
    grid = np.arange(12, dtype=np.int32).reshape(3, 4)
    extra = {"scalar": np.array(2.5), "strided": grid[:, ::2], "fortran": np.asfortranarray(grid)}
    ck.save(model, tmp_path / "m.npz", extra=extra)
    loaded = ck.load(tmp_path / "m.npz").extra
    for key, value in extra.items():
        assert loaded[key].shape == value.shape and loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


def test_dtype_override_and_default(saved, x):
    model, path = saved
    as32 = ck.load(path, backend="numpy", dtype="float32")
    assert as32.model.backend.dtype_name == "float32"
    np.testing.assert_allclose(_predict(as32.model, x), _predict(model, x), rtol=1e-4, atol=1e-5)
    assert ck.load(path, backend="numpy").model.backend.dtype_name == "float64"


def test_float32_model_keeps_its_dtype(tmp_path, x):
    model = _model(ap.get_backend("numpy", dtype="float32"))
    ck.save(model, tmp_path / "m.npz")
    loaded = ck.load(tmp_path / "m.npz")
    assert loaded.model.backend.dtype_name == "float32"
    np.testing.assert_array_equal(_predict(loaded.model, x), _predict(model, x))


def test_the_file_is_plain_npz_with_the_documented_checksum(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    assert header["format"] == "arrayprop-checkpoint"
    assert isinstance(header["version"], int)
    assert header["checksum"] == _independent_checksum(header, arrays)
    assert sorted(arrays) == sorted(header["arrays"])


def test_non_array_extra_must_be_json(tmp_path):
    model = _model(ap.get_backend("numpy", dtype="float64"))
    with pytest.raises(CheckpointError, match="JSON"):
        ck.save(model, tmp_path / "m.npz", extra={"f": object()})
    with pytest.raises(CheckpointError, match="numeric"):
        ck.save(model, tmp_path / "m.npz", extra={"a": np.array(["x"])})
    assert not os.listdir(tmp_path)


# -- optimizer state --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_state_round_trip(tmp_path, rng, name):
    from arrayprop.optim.registry import get_optimizer

    be = ap.get_backend("numpy", dtype="float64")
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    x = rng.standard_normal((16, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 16)
    loss = ap.SoftmaxCrossEntropy()
    model = _model(be)
    opt = get_optimizer(name, model.parameters(), lr=0.05, **kwargs)
    for _ in range(3):
        ap.train_step(model, loss, opt, x, y)
    ck.save(model, tmp_path / "m.npz", optimizer=opt)

    # Loaded onto the same backend: bit-identical continuation is a same-backend promise.
    loaded = ck.load(tmp_path / "m.npz", backend=be)
    state = loaded.optimizer_state
    assert state["type"] == name and state["steps"] == 3
    original = opt.state_dict()
    assert state["hyperparameters"] == original["hyperparameters"]
    assert state["lr"] == original["lr"]
    for ours, theirs in zip(state["state"], original["state"], strict=True):
        assert sorted(ours) == sorted(theirs)
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])

    opt2 = get_optimizer(name, loaded.model.parameters(), lr=0.05, **kwargs)
    assert ck.restore_optimizer(opt2, loaded) is opt2
    # Resumed training must continue exactly where the original left off.
    for _ in range(2):
        ap.train_step(model, loss, opt, x, y)
        ap.train_step(loaded.model, loss, opt2, x, y)
    for a, b in zip(_host_weights(model), _host_weights(loaded.model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_restore_optimizer_refuses_missing_or_foreign_state(saved, tmp_path):
    from arrayprop.optim.registry import get_optimizer

    _, path = saved
    loaded = ck.load(path)
    opt = get_optimizer("sgd", loaded.model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        ck.restore_optimizer(opt, loaded)

    model = loaded.model
    adam = get_optimizer("adam", model.parameters(), lr=0.1)
    ck.save(model, tmp_path / "adam.npz", optimizer=adam)
    with pytest.raises(CheckpointError, match=r"adam\.npz"):
        ck.restore_optimizer(opt, ck.load(tmp_path / "adam.npz"))


# -- atomic writes ----------------------------------------------------------------------------


def _crash_after_first_member(monkeypatch):
    real = ck_write._write_member
    calls = []

    def flaky(zf, name, arr):
        if calls:
            raise OSError("simulated crash: disk full")
        calls.append(name)
        real(zf, name, arr)

    monkeypatch.setattr(ck_write, "_write_member", flaky)


def test_crash_while_writing_keeps_the_old_checkpoint(saved, monkeypatch, x):
    model, path = saved
    before = path.read_bytes()
    other = _model(ap.get_backend("numpy", dtype="float64"), seed=1)
    _crash_after_first_member(monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        ck.save(other, path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]
    monkeypatch.undo()
    np.testing.assert_array_equal(_predict(ck.load(path).model, x), _predict(model, x))


def test_crash_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    _crash_after_first_member(monkeypatch)
    with pytest.raises(OSError):
        ck.save(_model(ap.get_backend("numpy", dtype="float64")), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_save_replaces_an_existing_file(saved, x):
    _, path = saved
    other = _model(ap.get_backend("numpy", dtype="float64"), seed=7)
    ck.save(other, path)
    np.testing.assert_array_equal(_predict(ck.load(path).model, x), _predict(other, x))
    assert os.listdir(path.parent) == [path.name]


# -- refusing bad files -------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ck.load(tmp_path / "nope.npz")


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello, not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not an arrayprop checkpoint"):
        ck.load(path)
    np.save(tmp_path / "plain.npy", np.arange(3.0))
    with pytest.raises(CheckpointError, match="not an arrayprop checkpoint"):
        ck.load(tmp_path / "plain.npy")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"model\.npz: truncated or corrupted"):
        ck.load(path)


def test_bit_flip_in_the_middle(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        ck.load(path)


def test_every_flipped_byte_is_caught_or_harmless(saved, x):
    """Flip bytes across the whole file: each load either fails with CheckpointError or (for zip
    metadata such as timestamps) yields exactly the saved model, never garbage."""
    model, path = saved
    data = path.read_bytes()
    expected = _predict(model, x)
    caught = 0
    for pos in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        path.write_bytes(bytes(flipped))
        try:
            loaded = ck.load(path)
        except CheckpointError:
            caught += 1
            continue
        np.testing.assert_array_equal(_predict(loaded.model, x), expected)
    assert caught > len(data) // 7 // 2


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones((2, 2)))
    with pytest.raises(CheckpointError, match="no 'header'"):
        ck.load(path)


def test_wrong_format_name(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    _write_raw(path, dict(header, format="something-else"), arrays)
    with pytest.raises(CheckpointError, match="something-else"):
        ck.load(path)


def test_newer_version(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    _write_raw(path, dict(header, version=ck.FORMAT_VERSION + 1), arrays)
    with pytest.raises(CheckpointError, match="newer"):
        ck.load(path)


def test_edited_array_fails_the_checksum(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    arrays["param.0"] = arrays["param.0"] + 1e-12
    _write_raw(path, header, arrays, rehash=False)
    with pytest.raises(CheckpointError, match="checksum"):
        ck.load(path)


def test_missing_array(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    del arrays["param.1"]
    _write_raw(path, header, arrays)
    with pytest.raises(CheckpointError, match=r"missing arrays \['param.1'\]"):
        ck.load(path)


def test_shape_mismatch_with_the_architecture(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    header["architecture"]["layers"][0]["out_features"] = 9
    header["architecture"]["layers"][2]["in_features"] = 9
    _write_raw(path, header, arrays)
    with pytest.raises(CheckpointError, match=r"shape \(6, 8\).*\(6, 9\)"):
        ck.load(path)


class _Bomb:
    """Unpickling this sets a flag: a checkpoint reader must never get that far."""

    exploded = False

    def __reduce__(self):
        return (_explode, ())


def _explode():
    _Bomb.exploded = True
    return "boom"


def test_pickled_object_array_is_refused_without_unpickling(saved):
    _, path = saved
    header, arrays = _read_raw(path)
    bomb = np.empty(1, dtype=object)
    bomb[0] = _Bomb()
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            if name != "param.0":
                zf.writestr(name + ".npy", _npy_bytes(arr))
        zf.writestr("param.0.npy", _npy_bytes(bomb, allow_pickle=True))
        zf.writestr("header.npy", _npy_bytes(np.frombuffer(_canonical(header), np.uint8)))
    with pytest.raises(CheckpointError, match="corrupted"):
        ck.load(path)
    assert not _Bomb.exploded


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(_Bomb()))
    with pytest.raises(CheckpointError, match="not an arrayprop checkpoint"):
        ck.load(path)
    assert not _Bomb.exploded


def _npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, arr, allow_pickle=allow_pickle)
    return b.getvalue()


def test_model_without_parameters_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="no parameters"):
        ck.save(ap.Sequential(ap.ReLU()), tmp_path / "m.npz")
