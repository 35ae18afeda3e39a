"""The files of the ``arrayprop`` command: outputs checked before training (never overwritten
unless asked), exit statuses, ``--resume``'s report, and a saved model used by ``evaluate`` and
``predict`` on raw inputs (also one saved before the preprocessing moved into the model)."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import cli, data
from arrayprop.cli import train as train_mod

XOR = ["train", "--dataset", "xor", "--model", "2-8-2", "--no-progress", "--epochs", "2"]
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib"
)


def _fails(argv, capsys, status=2):
    """Run the command; it must exit with ``status`` after one line on stderr, no traceback,
    and (for a bad command line) before training."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == status
    captured = capsys.readouterr()
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    if status == 2:
        assert "epoch" not in captured.out and "test loss" not in captured.out
    return captured.err


def _untouched(path: Path, content: bytes) -> None:
    assert path.read_bytes() == content


# -- outputs: checked before training, never overwritten unless asked --------------------------


@pytest.mark.parametrize("flag", ["--save", "--checkpoint", "--plot"])
def test_an_existing_output_is_refused_before_training(flag, tmp_path, capsys):
    if flag == "--plot" and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("needs matplotlib")
    path = tmp_path / ("out.png" if flag == "--plot" else "out.npz")
    path.write_bytes(b"precious")
    err = _fails([*XOR, flag, str(path)], capsys)
    assert f"{flag} {path}: the file exists" in err and "--overwrite" in err
    if flag == "--checkpoint":
        assert "--resume" in err
    _untouched(path, b"precious")


@needs_matplotlib
def test_overwrite_replaces_every_output(tmp_path, capsys):
    paths = {
        flag: tmp_path / f"o{flag[2:]}.{'png' if flag == '--plot' else 'npz'}"
        for flag in ("--save", "--checkpoint", "--plot")
    }
    for p in paths.values():
        p.write_bytes(b"old")
    argv = [*XOR, "--overwrite"] + [a for f, p in paths.items() for a in (f, str(p))]
    assert cli.main(argv) == 0
    capsys.readouterr()
    ap.load_checkpoint(paths["--save"])
    ap.load_checkpoint(paths["--checkpoint"])
    assert paths["--plot"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("first", "second"),
    [("--save", "--plot"), ("--save", "--checkpoint"), ("--checkpoint", "--plot")],
)
def test_two_outputs_naming_one_file_are_refused(first, second, tmp_path, capsys):
    if "--plot" in (first, second) and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("needs matplotlib")
    path = tmp_path / "same.png"
    # Also when spelt differently (./, a relative path), and even with --overwrite.
    other = os.path.relpath(path)
    err = _fails([*XOR, "--overwrite", first, str(path), second, other], capsys)
    assert "writes the same file" in err
    assert not path.exists()


@needs_matplotlib
@pytest.mark.parametrize("name", ["curves.npz", "curves", "curves.pgf", "curves.txt"])
def test_plot_formats_matplotlib_cannot_write_are_refused(name, tmp_path, capsys):
    err = _fails([*XOR, "--plot", str(tmp_path / name)], capsys)
    assert "is not a format it writes" in err and ".png" in err


@pytest.mark.parametrize("flag", ["--save", "--checkpoint"])
def test_unwritable_directories_are_refused_before_training(flag, tmp_path, capsys):
    # /proc takes no new file, even for root (for whom every permission check passes).
    for target in ("/proc/arrayprop-test.npz", str(tmp_path / "file.npz" / "m.npz")):
        if target.startswith(str(tmp_path)):
            (tmp_path / "file.npz").write_bytes(b"")  # a file where a directory should be
        err = _fails([*XOR, flag, target], capsys)
        assert flag in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_directory_is_refused_before_training(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        err = _fails([*XOR, "--save", str(ro / "m.npz")], capsys)
    finally:
        ro.chmod(stat.S_IRWXU)
    assert "cannot create a file" in err


@pytest.mark.parametrize("device", ["gpu", "mps", "meta", "xpu", "3", "cuda:99"])
def test_torch_devices_that_cannot_run_are_one_line_errors(device, capsys):
    pytest.importorskip("torch")
    err = _fails([*XOR, "--backend", "torch", "--device", device], capsys)
    assert device.split(":")[0] in err


def test_tilde_in_an_mnist_directory_is_expanded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    # The directory is found (no "does not exist"); it is empty, so the IDX files are missing.
    err = _fails(["train", "--dataset", "mnist:~/mnist"], capsys)
    assert "does not exist" not in err and str(tmp_path / "mnist") in err


def test_tilde_in_outputs_is_expanded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main([*XOR, "--save", "~/m.npz"]) == 0
    capsys.readouterr()
    assert (tmp_path / "m.npz").is_file()


# -- exit statuses ----------------------------------------------------------------------------


def test_exit_status_table_is_documented():
    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text("utf-8")
    table = text.split("| exit status |", 1)[1].split("\n\n", 1)[0]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert documented == set(cli.EXIT_STATUS)


def test_divergence_exits_1_with_one_line(tmp_path, capsys):
    save = tmp_path / "m.npz"
    argv = ["train", "--dataset", "xor", "--model", "2-16-2", "--optimizer", "sgd"]
    argv += ["--lr", "1e30", "--loss", "mse", "--epochs", "3", "--no-progress", "--save", str(save)]
    err = _fails(argv, capsys, status=1)
    assert "diverged" in err
    assert not save.exists()


def _interrupt_at(monkeypatch, epoch):
    real = train_mod.fit

    def stop(e, logs):
        if e == epoch:
            raise KeyboardInterrupt

    def fit(*args, **kwargs):
        return real(*args, callbacks=[ap.LambdaCallback(stop)], **kwargs)

    monkeypatch.setattr(train_mod, "fit", fit)


def test_ctrl_c_during_training_exits_130_and_keeps_the_work(monkeypatch, tmp_path, capsys):
    _interrupt_at(monkeypatch, 2)
    save, run = tmp_path / "m.npz", tmp_path / "run.npz"
    argv = [*XOR[:-1], "5", "--save", str(save), "--checkpoint", str(run)]
    assert cli.main(argv) == cli.INTERRUPTED == 130
    out = capsys.readouterr().out
    assert "interrupted" in out and f"--checkpoint {run} --resume" in out
    assert ap.load_checkpoint(save).extra["history"]["epochs"] == [1, 2]
    assert ap.load_checkpoint(run).extra["fit"]["epoch"] == 2


def test_ctrl_c_outside_training_exits_130(monkeypatch, capsys):
    def interrupted(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "load_dataset", interrupted)
    err = _fails(XOR, capsys, status=130)
    assert err == "arrayprop train: interrupted\n"


# -- --resume says where it continues ---------------------------------------------------------


def test_resume_reports_where_it_continues(tmp_path, capsys):
    run = tmp_path / "run.npz"
    base = [*XOR[:-2], "--schedule", "none", "--checkpoint", str(run)]
    assert cli.main([*base, "--epochs", "2", "--resume"]) == 0
    assert f"no checkpoint at {run} yet: starting from epoch 1" in capsys.readouterr().out
    assert cli.main([*base, "--epochs", "3", "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resuming from {run}: 2 of 3 epochs done, continuing at the start of epoch 3" in out
    assert cli.main([*base, "--epochs", "3", "--resume"]) == 0
    assert "all 3 epochs were done already" in capsys.readouterr().out


# -- the saved model reads raw inputs: evaluate, predict ----------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A digits model saved by train (3 epochs) and the accuracy train printed."""
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["train", "--epochs", "3", "--no-progress", "--save", str(path)]) == 0
    line = re.search(r"test loss (\S+)  test accuracy (\S+)%", out.getvalue())
    return path, line.group(1), line.group(2)


def test_saved_model_is_right_on_raw_input(saved):
    path, _, acc = saved
    (_, _), (x_te, y_te) = data.load_digits(seed=0)  # raw pixels, no preprocessing by hand
    model = ap.load_checkpoint(path).model
    labels = np.argmax(model.backend.to_host(model.predict(x_te)), axis=1)
    assert f"{100 * np.mean(labels == y_te):.2f}" == acc


def test_evaluate_reproduces_what_train_printed(saved, capsys):
    path, loss, acc = saved
    assert cli.main(["evaluate", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"test loss {loss}  test accuracy {acc}%  (359 samples of digits)")
    assert cli.main(["evaluate", "--model", str(path), "--backend", "array_api_strict"]) == 0
    assert f"test accuracy {acc}%" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["rows", "images"])
def test_predict_writes_labels_and_probabilities(saved, tmp_path, capsys, layout):
    path, _, acc = saved
    (_, _), (x_te, y_te) = data.load_digits(seed=0)
    x = x_te if layout == "rows" else x_te.reshape(-1, 1, 8, 8)
    np.save(tmp_path / "x.npy", x)
    labels, proba = tmp_path / "labels.npy", tmp_path / "proba.npy"
    base = ["predict", "--model", str(path), "--input", str(tmp_path / "x.npy")]
    assert cli.main([*base, "--output", str(labels)]) == 0
    assert cli.main([*base, "--output", str(proba), "--kind", "probabilities"]) == 0
    capsys.readouterr()
    got = np.load(labels)
    assert got.dtype == np.int64 and got.shape == (359,)
    assert f"{100 * np.mean(got == y_te):.2f}" == acc
    p = np.load(proba)
    assert p.shape == (359, 10) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(p, axis=1), got)


def test_predict_refuses_bad_files_in_one_line(saved, tmp_path, capsys):
    path, _, _ = saved
    out = tmp_path / "y.npy"
    out.write_bytes(b"keep")
    good = tmp_path / "x.npy"
    np.save(good, np.zeros((3, 64), dtype=np.float32))
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "wide.npy", np.zeros((3, 65)))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    np.savez(tmp_path / "arch.npz", x=np.zeros((3, 64)))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    cases = {
        "output exists": ([good, out], "the file exists"),
        "output not .npy": ([good, tmp_path / "y.csv"], "not a format"),
        "missing input": ([tmp_path / "none.npy", tmp_path / "a.npy"], "no such file"),
        "pickled input": ([tmp_path / "obj.npy", tmp_path / "a.npy"], "not a .npy array"),
        "junk input": ([tmp_path / "junk.npy", tmp_path / "a.npy"], "not a .npy array"),
        "npz input": ([tmp_path / "arch.npz", tmp_path / "a.npy"], ".npz archive"),
        "text input": ([tmp_path / "text.npy", tmp_path / "a.npy"], "expected numbers"),
        "wrong width": ([tmp_path / "wide.npy", tmp_path / "a.npy"], "the model reads (n, 64)"),
    }
    for (x, y), words in cases.values():
        argv = ["predict", "--model", str(path), "--input", str(x), "--output", str(y)]
        assert words in _fails(argv, capsys)
    _untouched(out, b"keep")
    assert not (tmp_path / "a.npy").exists()
    for argv, words in [
        (["--model", str(tmp_path / "none.npz")], "no such file"),
        (["--model", str(good)], "not an arrayprop checkpoint"),
    ]:
        err = _fails(
            ["predict", *argv, "--input", str(good), "--output", str(tmp_path / "b.npy")], capsys
        )
        assert words in err


def test_evaluate_refuses_a_data_set_that_does_not_fit(saved, capsys):
    path, _, _ = saved
    err = _fails(["evaluate", "--model", str(path), "--dataset", "xor"], capsys)
    assert "2 classes" in err and "10 outputs" in err


def test_probabilities_need_a_known_loss(tmp_path, capsys):
    model = ap.mlp([64, 10], seed=0)
    ap.save_checkpoint(model, tmp_path / "m.npz")  # saved without saying its loss
    np.save(tmp_path / "x.npy", np.zeros((2, 64), dtype=np.float32))
    argv = ["predict", "--model", str(tmp_path / "m.npz"), "--input", str(tmp_path / "x.npy")]
    err = _fails([*argv, "--output", str(tmp_path / "p.npy"), "--kind", "probabilities"], capsys)
    assert "--kind labels" in err
    assert cli.main([*argv, "--output", str(tmp_path / "l.npy")]) == 0  # labels need no loss


def test_a_model_saved_before_standardize_moved_inside_still_works(tmp_path, capsys):
    # What train --save wrote before: the model reads standardised inputs and the statistics
    # are only in extra. evaluate and predict put them in front of it.
    ds = cli.load_dataset("digits")
    pre = ds.standardized()
    model = ap.mlp([64, 32, 10], seed=0)
    ap.fit(
        model,
        pre.x_train,
        pre.y_train,
        loss="softmax-ce",
        optimizer="adam",
        epochs=2,
        seed=0,
        progress=None,
    )
    path = tmp_path / "old.npz"
    extra = {
        "dataset": "digits",
        "input_mean": ds.mean,
        "input_scale": ds.scale,
        "input_shape": [64],
        "classes": 10,
        "loss": "softmax-ce",
    }
    ap.save_checkpoint(model, path, extra=extra)
    expected = ap.evaluate(model, pre.x_test, pre.y_test, loss="softmax-ce")
    assert cli.main(["evaluate", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {100 * expected['accuracy']:.2f}%" in out
    assert f"test loss {expected['loss']:.4f}" in out
    np.save(tmp_path / "x.npy", ds.x_test)  # raw
    argv = ["predict", "--model", str(path), "--input", str(tmp_path / "x.npy")]
    assert cli.main([*argv, "--output", str(tmp_path / "y.npy")]) == 0
    capsys.readouterr()
    ref = np.argmax(model.predict(pre.x_test), axis=1)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref)
