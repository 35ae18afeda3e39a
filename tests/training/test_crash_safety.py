"""Crashes never cost a user their checkpoint, and an untrusted file never runs code.

- A process saving checkpoints in a loop is SIGKILLed at random moments, many times: after every
  kill the file at the path loads and holds exactly one of the versions that were saved.
- Temporaries a killed writer leaves behind are ignored by ``load`` and removed by the next save.
- Truncated, bit-flipped and foreign files are refused with CheckpointError (or, for a flip in a
  byte of zip bookkeeping numpy never reads, load exactly what was saved).
- A pickle payload inside a file is never unpickled.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ckpt
from arrayprop.checkpoint.format import canonical_json, checksum
from arrayprop.errors import CheckpointError
from arrayprop.training.callbacks import Callback
from fitref import CtrlCAt

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs fork, SIGKILL and pids")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def _temporaries(path) -> list:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


# -- temporaries left by a killed writer -------------------------------------------------------


@posix_only
def test_load_ignores_and_the_next_save_removes_temporaries_of_dead_writers(tmp_path):
    path = tmp_path / "model.npz"
    model = ap.mlp([3, 4, 2], seed=0, backend="numpy")
    ckpt.save(model, path)
    # What SIGKILL mid-save leaves: a half-written temporary named after the dead writer ...
    stale = tmp_path / f".model.npz.{_dead_pid()}.k2j4.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")
    # ... and one of a writer that is still running (this test's parent process stands in).
    live = tmp_path / f".model.npz.{os.getppid()}.x9q1.tmp"
    live.write_bytes(b"PK\x03\x04 being written")
    other = tmp_path / f".other.npz.{_dead_pid()}.a1b2.tmp"
    other.write_bytes(b"not ours")

    loaded = ckpt.load(path)
    np.testing.assert_array_equal(loaded.model[0].weight.data, model[0].weight.data)

    ckpt.save(model, path)
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert _temporaries(path) == [live]


# -- SIGKILL during save ---------------------------------------------------------------------

#: A process that forks savers on request. Forking from a small single-threaded process costs a
#: few ms, where starting Python with arrayprop costs most of a second: the test can afford
#: dozens of kills. Each saver writes versions base, base + 1, ... with every weight equal to
#: the version number, until it is killed.
SAVER_SERVER = """
import os, signal, sys
from arrayprop import checkpoint, mlp

path = sys.argv[1]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed savers
model = mlp([256, 256, 256], seed=0, backend="numpy", dtype="float64")  # 1 MiB: a save ~ms
params = model.parameters()
print("ready", flush=True)
for line in sys.stdin:
    base = int(line)
    pid = os.fork()
    if pid == 0:
        version = base
        while True:
            for p in params:
                p.data[...] = version
            checkpoint.save(model, path, extra={"version": version})
            version += 1
    print(pid, flush=True)
"""

KILL_TRIALS = 40


def _child_env() -> dict:
    src = os.path.dirname(os.path.dirname(ap.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    # One BLAS thread: the server forks, and forking a process with idle BLAS threads is unsafe.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.001)
    raise AssertionError(f"saver {pid} survived SIGKILL for {timeout} s")


@posix_only
def test_sigkill_at_random_moments_of_saving_never_breaks_the_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    model = ap.mlp([256, 256, 256], seed=0, backend="numpy", dtype="float64")
    for p in model.parameters():
        p.data[...] = 0.0
    ckpt.save(model, path, extra={"version": 0})
    script = tmp_path / "saver_server.py"
    script.write_text(SAVER_SERVER)
    server = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    rng = np.random.default_rng(2024)
    previous, passed, mid_save, advanced = 0, 0, 0, 0
    try:
        assert server.stdout.readline().strip() == "ready"
        for trial in range(1, KILL_TRIALS + 1):
            base = trial * 1_000_000
            server.stdin.write(f"{base}\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.06))
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)

            left = _temporaries(path)
            mid_save += any(f".{pid}." in t.name for t in left)
            # Each save removes the temporaries of dead savers: never more than the last one's.
            assert len(left) <= 1, left
            loaded = ckpt.load(path)
            version = loaded.extra["version"]
            # The last complete save of this saver, or the previous file if it never finished.
            assert version == previous or base <= version < base + 1_000_000, version
            for p in loaded.model.parameters():
                assert np.all(loaded.model.backend.to_host(p.data) == version)
            advanced += version != previous
            previous = version
            passed += 1
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        server.stdout.close()
    assert passed == KILL_TRIALS
    # The trials must have exercised both kinds of kill: between saves and inside one.
    assert mid_save >= KILL_TRIALS // 4, mid_save
    assert advanced >= KILL_TRIALS // 4, advanced
    ckpt.save(model, path)
    assert _temporaries(path) == []
    print(f"kill trials passed: {passed}/{KILL_TRIALS} ({mid_save} killed mid-save)")


# -- damaged and foreign files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small checkpoint with optimizer state and extras, its bytes and what it holds."""
    rng = np.random.default_rng(7)
    model = ap.mlp([5, 6, 3], seed=3, backend="numpy", dtype="float64")
    opt = ap.Adam(model.parameters(), lr=1e-2)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    for _ in range(2):
        ap.train_step(model, ap.SoftmaxCrossEntropy(), opt, x, y)
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    ckpt.save(model, path, optimizer=opt, extra={"epoch": 2, "mean": rng.standard_normal(5)})
    return path, path.read_bytes(), _contents(ckpt.load(path))


def _contents(loaded) -> dict:
    """Everything a checkpoint gives back, as host arrays and plain values."""
    be = loaded.model.backend
    out = {f"param.{i}": be.to_host(p.data) for i, p in enumerate(loaded.model.parameters())}
    state = loaded.optimizer_state
    out["optim"] = (state["type"], state["hyperparameters"], state["steps"])
    for i, entry in enumerate(state["state"]):
        out.update({f"optim.{i}.{k}": np.asarray(v) for k, v in entry.items()})
    out.update({f"extra.{k}": v for k, v in loaded.extra.items()})
    out["architecture"] = loaded.info["architecture"]
    return out


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if isinstance(a[k], np.ndarray):
            if a[k].dtype != b[k].dtype or not np.array_equal(a[k], b[k]):
                return False
        elif a[k] != b[k]:
            return False
    return True


def test_every_truncation_is_refused(saved, tmp_path):
    _, raw, _ = saved
    cut = tmp_path / "cut.npz"
    lengths = sorted({*range(0, 64), *range(len(raw) - 64, len(raw)), *range(0, len(raw), 97)})
    for n in lengths:
        cut.write_bytes(raw[:n])
        with pytest.raises(CheckpointError, match=r"cut\.npz: "):
            ckpt.load(cut)
    assert len(lengths) > 150


BIT_FLIPS = 400


def test_bit_flips_are_refused_or_change_nothing_that_is_loaded(saved, tmp_path):
    _, raw, expected = saved
    flipped = tmp_path / "flipped.npz"
    rng = np.random.default_rng(11)
    refused = harmless = 0
    for _ in range(BIT_FLIPS):
        data = bytearray(raw)
        pos = int(rng.integers(len(data)))
        data[pos] ^= 1 << int(rng.integers(8))
        flipped.write_bytes(bytes(data))
        try:
            loaded = ckpt.load(flipped)
        except CheckpointError:
            refused += 1
            continue
        # Loaded: the flip hit zip bookkeeping numpy never reads (a timestamp, the
        # "version made by" byte, file attributes...); every value must be what was saved.
        assert _same(_contents(loaded), expected), f"flip at byte {pos} loaded other values"
        harmless += 1
    assert refused + harmless == BIT_FLIPS
    assert refused > BIT_FLIPS // 2
    print(f"bit flips: {refused} refused, {harmless} in bytes that are never read")


def test_a_flip_in_any_stored_value_is_refused(saved, tmp_path):
    # Every byte of every array (weights, optimizer state, extras, the JSON header) is covered
    # by the zip CRC and the checksum: flip bits inside each member's data, expect a refusal.
    path, raw, _ = saved
    flipped = tmp_path / "flipped.npz"
    rng = np.random.default_rng(5)
    tried = 0
    with zipfile.ZipFile(path) as zf, np.load(path) as npz:
        for info in zf.infolist():
            local = info.header_offset
            name_len = int.from_bytes(raw[local + 26 : local + 28], "little")
            extra_len = int.from_bytes(raw[local + 28 : local + 30], "little")
            end = local + 30 + name_len + extra_len + info.compress_size  # stored, not deflated
            nbytes = npz[info.filename.removesuffix(".npy")].nbytes
            for pos in rng.integers(end - nbytes, end, size=min(nbytes, 6)):
                data = bytearray(raw)
                data[int(pos)] ^= 1 << int(rng.integers(8))
                flipped.write_bytes(bytes(data))
                with pytest.raises(CheckpointError, match=r"flipped\.npz: "):
                    ckpt.load(flipped)
                tried += 1
    assert tried > 40


class _Payload:
    """Unpickling this creates the directory ``marker`` (stands for any code an attacker ships)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _zip(path, members: dict) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _foreign_files(tmp_path, raw: bytes, marker) -> dict:
    """name -> path of files that are not arrayprop checkpoints (some of them hostile)."""
    payload = pickle.dumps(_Payload(marker))
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    files = {}

    def put(name, data: bytes):
        files[name] = tmp_path / name
        files[name].write_bytes(data)

    put("empty.npz", b"")
    put("random.npz", np.random.default_rng(0).bytes(4096))
    put("random-zip-magic.npz", b"PK\x03\x04" + np.random.default_rng(1).bytes(4096))
    put("pickle.npz", payload)
    put("text.npz", b'{"format": "arrayprop-checkpoint", "version": 1}')
    np.savez(tmp_path / "plain.npz", weights=np.ones((3, 4)))
    files["plain.npz"] = tmp_path / "plain.npz"
    _zip(tmp_path / "docs.zip", {"readme.txt": "hello"})
    files["docs.zip"] = tmp_path / "docs.zip"
    # Object arrays: a pickle inside .npy members, where a checkpoint's header and arrays go.
    _zip(tmp_path / "object-header.npz", {"header.npy": _npy_bytes(evil)})
    files["object-header.npz"] = tmp_path / "object-header.npz"
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["param.0.npy"] = _npy_bytes(evil)
    _zip(tmp_path / "object-param.npz", members)
    files["object-param.npz"] = tmp_path / "object-param.npz"
    members = dict(members, **{"param.0.npy": payload})
    _zip(tmp_path / "raw-pickle-member.npz", members)
    files["raw-pickle-member.npz"] = tmp_path / "raw-pickle-member.npz"
    return files


def test_foreign_and_hostile_files_are_refused_and_never_unpickled(saved, tmp_path):
    _, raw, _ = saved
    # The payload works: unpickling it really creates the marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    files = _foreign_files(tmp_path, raw, marker)
    for name, path in files.items():
        with pytest.raises(CheckpointError, match=rf"{name}: ") as info:
            ckpt.load(path)
        assert not marker.exists(), f"loading {name} ran the pickle payload"
        assert "not an arrayprop checkpoint" in str(info.value) or "corrupted" in str(info.value), (
            f"{name}: {info.value}"
        )
    assert len(files) == 10


# -- fit: divergence, interrupts, resume ---------------------------------------------------------


class _BlowUpAfter(Callback):
    """Sets a learning rate that overflows the weights once ``epoch`` has ended."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            self.optimizer.lr = 1e200


def _blobs(n=64, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)), rng.integers(0, classes, n)


def test_divergence_names_epoch_step_and_layer_and_keeps_the_last_finite_weights(backend, tmp_path):
    x, y = _blobs()
    path = tmp_path / "run.npz"
    model = ap.mlp([4, 8, 8, 3], seed=0, backend=backend)
    with pytest.raises(ap.DivergenceError) as info:
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=5, batch_size=16,
               progress=None, callbacks=[_BlowUpAfter(2)], checkpoint=path, seed=1)  # fmt: skip
    err = info.value
    message = str(err)
    assert err.epoch == 3 and "epoch 3" in message
    assert 1 <= err.step <= 4 and f"step {err.step} of 4" in message
    # The parameter named is one of a Dense layer of this model, by dotted name (which one
    # depends on how the backend's ReLU backward treats NaN: the portable where() drops it,
    # NumPy's product keeps it).
    found = re.fullmatch(r"((\d+)\.(weight|bias)) of (Dense\(\d+, \d+\))", err.layer)
    assert found and err.layer in message
    assert found.group(1) in dict(model.named_parameters())
    assert repr(model[int(found.group(2))]) == found.group(4)
    # The checkpoint of epoch 2 is intact, and the model holds exactly its weights (the last
    # ones read back finite), not the overflowed ones.
    saved = ckpt.load(path, backend=backend)
    assert saved.extra["fit"]["epoch"] == 2
    for mine, theirs in zip(model.parameters(), saved.model.parameters(), strict=True):
        host = backend.to_host(mine.data)
        assert np.all(np.isfinite(host))
        np.testing.assert_array_equal(host, backend.to_host(theirs.data))
    # Still usable: predictions are finite, and training on with a sane rate works.
    assert np.all(np.isfinite(backend.to_host(model.predict(x))))
    history = ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, progress=None)
    assert np.isfinite(history.loss[-1])


def _train(backend, path=None, *, epochs=4, resume=False, metrics=(), callbacks=()):
    """A float64 run that is the same every time it is called with the same arguments."""
    x, y = _blobs(n=50)
    model = ap.mlp([4, 8, 3], seed=0, backend=backend)
    opt = ap.Adam(model.parameters(), lr=0.01)
    history = ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=epochs,
                     batch_size=8, seed=3, progress=None, checkpoint=path, resume=resume,
                     metrics=["accuracy", *metrics], callbacks=callbacks)  # fmt: skip
    return model, history


def _weights(model):
    return [model.backend.to_host(p.data) for p in model.parameters()]


@posix_only
def test_ctrl_c_mid_epoch_returns_the_history_saves_and_resumes_exactly(backend, tmp_path):
    reference, full = _train(backend)
    path = tmp_path / "run.npz"
    # 7 steps per epoch (50 samples, batches of 8): step 11 is in the middle of epoch 2.
    model, history = _train(backend, path, metrics=[CtrlCAt(11)])
    assert history.interrupted and history.epochs == [1]
    assert np.all(np.isfinite(backend.to_host(model.predict(_blobs(n=50)[0]))))
    saved = ckpt.load(path)
    assert (saved.extra["fit"]["epoch"], saved.extra["fit"]["step"]) == (1, 4)
    # Resuming mid-epoch needs the same metrics (the epoch's partial sums are per metric).
    with pytest.raises(CheckpointError, match="saved mid-epoch with 2 metric"):
        _train(backend, path, resume=True)
    resumed, rest = _train(backend, path, resume=True, metrics=[CtrlCAt(0)])
    assert rest.epochs == [1, 2, 3, 4] and not rest.interrupted
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(rest.loss, full.loss, rtol=1e-12)


class _Interrupt(Callback):
    def on_epoch_end(self, epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt


def test_keyboard_interrupt_in_a_callback_returns_the_history_and_saves(backend, tmp_path):
    path = tmp_path / "run.npz"
    model, history = _train(backend, path, callbacks=[_Interrupt()])
    assert history.interrupted and history.epochs == [1, 2]
    saved = ckpt.load(path, backend=backend)
    assert saved.extra["fit"]["epoch"] == 2
    for a, b in zip(_weights(model), _weights(saved.model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(backend.to_host(model.predict(_blobs(n=50)[0]))))
    reference, _ = _train(backend)
    resumed, _ = _train(backend, path, resume=True)
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)


#: The run killed in a subprocess and repeated in-process: one source for both.
TRAINING = """
import sys, time
import numpy as np
import arrayprop as ap
from arrayprop import Callback


class Slow(Callback):
    # Reports each saved epoch and slows the run down, so that a kill lands mid-run.
    def on_epoch_begin(self, epoch):
        if epoch > 1:
            print(f"saved {epoch - 1}", flush=True)
        time.sleep(self.delay)


def train(path, resume=False, epochs=12, delay=0.0):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((120, 6)), rng.integers(0, 3, 120)
    model = ap.mlp([6, 16, 3], seed=0, backend="numpy", dtype="float64")
    opt = ap.SGD(model.parameters(), lr=0.05, momentum=0.9)
    slow = Slow()
    slow.delay = delay
    ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=epochs, batch_size=16,
           seed=5, progress=None, checkpoint=path, resume=resume, callbacks=[slow])
    return model


if __name__ == "__main__":
    train(sys.argv[1], delay=0.05)
"""


@posix_only
def test_resume_after_sigkill_mid_run_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    script = tmp_path / "training.py"
    script.write_text(TRAINING)
    namespace: dict = {}
    exec(compile(TRAINING, str(script), "exec"), namespace)
    path = tmp_path / "run.npz"
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                            text=True, env=_child_env())  # fmt: skip
    try:
        while proc.stdout.readline().strip() != "saved 2":
            assert proc.poll() is None, "the training subprocess ended early"
        time.sleep(np.random.default_rng().uniform(0.0, 0.15))
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed or saved
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    done = ckpt.load(path).extra["fit"]["epoch"]
    assert 2 <= done < 12

    resumed = namespace["train"](path, resume=True)
    reference = namespace["train"](tmp_path / "reference.npz")
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_crafted_header_cannot_make_load_allocate_a_huge_model(saved, tmp_path):
    # The checksum proves integrity, not authorship: anyone can write a file whose header asks
    # for Dense(100000, 100000) and recompute it. load must refuse before building the model
    # (which would first draw 75 GiB of initial weights).
    _, raw, _ = saved
    path = tmp_path / "crafted.npz"
    path.write_bytes(raw)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    header["architecture"]["layers"][0].update(in_features=100_000, out_features=100_000)
    header["checksum"] = checksum(header, arrays)
    arrays["header"] = np.frombuffer(canonical_json(header), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"parameter 0.weight has shape \(5, 6\), its "):
        ckpt.load(path)


_HUGE_LAYERS = {
    # (a small model of the layer, the edit of its config that asks for 70-160 MB, the name):
    # enough to see, not enough to hurt when the check is missing
    "Conv2D": (
        lambda: ap.Sequential(ap.Conv2D(1, 2, 3, seed=0)),
        {"in_channels": 2000, "out_channels": 1000},
        "0.weight",
    ),
    "Embedding": (
        lambda: ap.Sequential(ap.Embedding(5, 3, seed=0)),
        {"num_embeddings": 4 * 10**6, "embedding_dim": 10},
        "0.weight",
    ),
    "BatchNorm2d": (
        lambda: ap.Sequential(ap.BatchNorm2d(4)),
        {"num_features": 10**7},
        "0.running_mean",
    ),
    "LayerNorm": (
        lambda: ap.Sequential(ap.LayerNorm((2, 3))),
        {"normalized_shape": [4000, 5000]},
        "0.weight",
    ),
    "Standardize": (
        lambda: ap.Sequential(ap.Standardize(3), ap.Dense(3, 2, seed=0)),
        {"shape": [2 * 10**7]},
        "0.mean",
    ),
}


@pytest.mark.parametrize("layer", sorted(_HUGE_LAYERS))
def test_no_built_in_layer_config_can_make_load_allocate_more_than_the_file(layer, tmp_path):
    """Every built-in layer states its shapes from its config: load compares them with the
    stored arrays before building anything, so a crafted size costs nothing (the issue's
    Dense(100000, 100000) above, for every layer with state)."""
    import tracemalloc

    make, edit, name = _HUGE_LAYERS[layer]
    path = tmp_path / "crafted.npz"
    ckpt.save(make(), path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    header["architecture"]["layers"][0].update(edit)
    header["checksum"] = checksum(header, arrays)
    arrays["header"] = np.frombuffer(canonical_json(header), dtype=np.uint8)
    np.savez(path, **arrays)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=rf"{name} has shape \(.*\), its architecture"):
            ckpt.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"load allocated {peak / 2**20:.0f} MiB before refusing"
