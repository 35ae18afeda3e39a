"""The ``arrayprop`` command line: train, info, gradcheck, bench wiring and one-line errors."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import arrayprop as ap
import arrayprop.backends as backend_mod
from arrayprop import checkpoint as ck
from arrayprop import cli, data


def _accuracy(text: str) -> float:
    match = re.search(r"test accuracy (\d+\.\d+)%", text)
    assert match, text
    return float(match.group(1)) / 100


def _digits_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The CLI's preprocessing, written out independently: centre per pixel, one global scale."""
    (x_tr, _), (x_te, y_te) = data.load_digits(seed=0)
    mean = x_tr.mean(axis=0)
    scale = (x_tr - mean).std()
    return ((x_te - mean) / scale).astype(np.float32), y_te


# -- train ---------------------------------------------------------------------------------------


def test_train_digits_reports_and_saves_what_it_trained(tmp_path, capsys):
    path = tmp_path / "digits.npz"
    status = cli.main(["train", "--epochs", "3", "--no-progress", "--save", str(path)])
    assert status == 0
    out = capsys.readouterr().out
    acc = _accuracy(out)
    assert acc > 0.9
    # The saved model reproduces the printed accuracy on the raw test images: the
    # preprocessing travels inside it (a Standardize of the statistics written out here).
    loaded = ck.load(path)
    (_, _), (x_raw, y_te) = data.load_digits(seed=0)
    logits = loaded.model.backend.to_host(loaded.model.predict(x_raw))
    assert np.mean(np.argmax(logits, axis=1) == y_te) == pytest.approx(acc, abs=5e-5)
    first = loaded.model[0]
    assert isinstance(first, ap.Standardize)
    x_te, _ = _digits_test_set()
    np.testing.assert_allclose(first.forward(x_raw), x_te, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.extra["input_mean"], data.load_digits(seed=0)[0][0].mean(0))
    assert loaded.optimizer_state["type"] == "adamw"
    assert loaded.extra["history"]["epochs"] == [1, 2, 3]
    assert loaded.model.config()["layers"][1]["out_features"] == cli.DEFAULT_HIDDEN[0]


def test_train_prints_one_line_per_epoch(capsys):
    assert cli.main(["train", "--dataset", "xor", "--epochs", "2", "--model", "2-16-2"]) == 0
    out = capsys.readouterr().out
    assert "xor: 270 train / 30 validation / 100 test samples, 2 features, 2 classes" in out
    assert len(re.findall(r"^epoch \d/2", out, flags=re.M)) == 2
    assert "test loss" in out


@pytest.mark.parametrize(
    ("loss", "optimizer", "extra"),
    [
        ("mse", "sgd", ["--momentum", "0.9", "--lr", "0.1"]),
        ("bce", "rmsprop", ["--lr", "0.01"]),
        ("softmax-ce", "adagrad", ["--lr", "0.1", "--schedule", "none"]),
    ],
)
def test_train_losses_and_optimizers_learn_xor(capsys, loss, optimizer, extra):
    argv = ["train", "--dataset", "xor", "--loss", loss, "--optimizer", optimizer, *extra]
    assert cli.main([*argv, "--epochs", "15", "--model", "2-32-2", "--no-progress"]) == 0
    assert _accuracy(capsys.readouterr().out) >= 0.9


def test_train_float64_on_array_api_strict(capsys):
    argv = ["train", "--dataset", "spirals", "--backend", "array_api_strict", "--dtype", "float64"]
    assert cli.main([*argv, "--epochs", "2", "--no-progress"]) == 0
    assert 0 <= _accuracy(capsys.readouterr().out) <= 1


def test_train_float16_with_the_default_optimizer_learns_digits(capsys):
    # AdamW's eps = 1e-8 is 0 in float16: with its state in float16 the run diverged at step 2.
    assert cli.main(["train", "--dtype", "float16", "--epochs", "3", "--no-progress"]) == 0
    assert _accuracy(capsys.readouterr().out) > 0.9


def test_checkpoint_and_resume_continue_exactly(tmp_path, capsys):
    base = ["train", "--dataset", "xor", "--model", "2-8-2", "--no-progress", "--schedule", "none"]
    full, resumed, run = tmp_path / "full.npz", tmp_path / "resumed.npz", tmp_path / "run.npz"
    assert cli.main([*base, "--epochs", "4", "--save", str(full)]) == 0
    assert cli.main([*base, "--epochs", "2", "--checkpoint", str(run)]) == 0
    argv = [*base, "--epochs", "4", "--checkpoint", str(run), "--resume", "--save", str(resumed)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    a, b = ck.load(full).model, ck.load(resumed).model
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "curves.png"
    argv = ["train", "--dataset", "xor", "--epochs", "3", "--no-progress", "--plot", str(png)]
    assert cli.main(argv) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (900, 360)


def test_plot_without_matplotlib_is_a_clean_error(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--epochs", "1", "--plot", str(tmp_path / "c.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib" in err and "arrayprop[plot]" in err
    assert not (tmp_path / "c.png").exists()


# -- info, gradcheck, bench -------------------------------------------------------------------


def test_info_lists_versions_backends_and_blas(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"arrayprop {ap.__version__}" in out
    assert f"NumPy {np.__version__}, BLAS: " in out
    assert f"Python {sys.version.split()[0]}" in out
    for name in ap.BACKENDS:
        assert re.search(rf"^  {name}\s", out, flags=re.M), name
    assert re.search(r"^  numpy\s+\S+\s+usable\s+cpu$", out, flags=re.M)
    from arrayprop.backends.numpy import blas as numpy_blas

    fold = "plain SGD folded into the weight-gradient GEMM on numpy: "
    assert f"{fold}{numpy_blas.status()}\n" in out


def test_info_reports_the_blas_threads_and_the_rule_of_fit(capsys, monkeypatch):
    from arrayprop.backends import threads

    monkeypatch.setenv(threads.BLAS_ENV, "off")
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    pools = threads.blas_pools()
    line = next(x for x in out.splitlines() if x.startswith("BLAS threads: "))
    assert f"{pools[0]['internal_api']} {pools[0]['version']}: {pools[0]['num_threads']}" in line
    assert f"  {threads.describe_rule()}\n" in out
    assert f"{threads.SMALL_GEMM:,}" in out and f"set here: {threads.BLAS_ENV}=off" in out


def test_info_says_why_the_fold_is_off(capsys, monkeypatch):
    from arrayprop import kernels

    with kernels.use_portable():
        assert cli.main(["info"]) == 0
    assert "GEMM on numpy: off (portable kernels)" in capsys.readouterr().out


def test_backend_report_agrees_with_get_backend():
    for row in backend_mod.describe_backends():
        try:
            ap.get_backend(row["name"])
            usable = True
        except (ap.BackendUnavailableError, ImportError):
            usable = False
        assert row["usable"] == usable, row
        assert bool(row["devices"]) == usable


def test_gradcheck_passes_on_numpy(capsys):
    assert cli.main(["gradcheck", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^  (.+?)\s+(\d\.\d\de[-+]\d+)\s+(ok|FAIL)$", out, flags=re.M)
    names = {name for name, _, _ in rows}
    expected_names = ("Dense(4, 3)", "ReLU", "Softmax", "RMSE", "BCE(logits)", "SoftmaxCE(labels)")
    for expected in (*expected_names, "Standardize(4)"):
        assert expected in names
    assert any(name.startswith("mlp") for name in names)
    # N-D input: Flatten, a Dense per position, and a model that starts with a Flatten.
    assert {"Flatten", "Dense(2, 3) per position"} <= names
    assert any(name.startswith("Flatten + mlp") for name in names)
    assert all(status == "ok" and float(err) < 1e-6 for _, err, status in rows)
    assert f"{len(rows)} passed, 0 failed" in out


def test_gradcheck_catches_a_wrong_backward(monkeypatch, capsys):
    real = ap.Sigmoid.backward

    def doubled(self, grad_out, **kwargs):
        return 2 * real(self, grad_out, **kwargs)

    monkeypatch.setattr(ap.Sigmoid, "backward", doubled)
    assert cli.main(["gradcheck", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^  Sigmoid\s+\S+\s+FAIL$", out, flags=re.M)
    assert re.search(r"^  Tanh\s+\S+\s+ok$", out, flags=re.M)


def test_gradcheck_catches_a_wrong_flatten_backward(monkeypatch, capsys):
    real = ap.Flatten.backward

    def swapped(self, grad):
        shape = self._shape
        g = real(self, grad)  # the right shape, with the two trailing axes' values swapped
        return np.swapaxes(np.asarray(g).reshape(shape[0], shape[2], shape[1]), 1, 2)

    monkeypatch.setattr(ap.Flatten, "backward", swapped)
    assert cli.main(["gradcheck", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^  Flatten\s+\S+\s+FAIL$", out, flags=re.M)
    assert re.search(r"^  Flatten \+ mlp .*FAIL$", out, flags=re.M)
    assert re.search(r"^  Dense\(2, 3\) per position\s+\S+\s+ok$", out, flags=re.M)


def test_bench_subcommand_is_wired():
    args = cli.build_parser().parse_args(["bench", "--configs", "tiny", "--repeat", "3"])
    from arrayprop import bench

    assert args.run is bench.run_from_args
    assert args.repeat == 3


# -- bad arguments: one line on stderr, exit status 2 -----------------------------------------


def _unusable_backend() -> str | None:
    for name in ap.BACKENDS:
        try:
            ap.get_backend(name)
        except ap.BackendUnavailableError:
            return name
    return None


BAD = {
    "no command": [],
    "unknown command": ["frobnicate"],
    "unknown option": ["train", "--bogus"],
    "unknown activation": ["train", "--activation", "swish"],
    "unknown loss": ["train", "--loss", "hinge"],
    "unknown optimizer": ["train", "--optimizer", "lion"],
    "unknown backend": ["train", "--backend", "tensorflow"],
    "unknown dataset": ["train", "--dataset", "cifar10"],
    "model not numbers": ["train", "--model", "64-x-10"],
    "model one width": ["train", "--model", "64"],
    "model zero width": ["train", "--model", "64-0-10"],
    "model wrong input width": ["train", "--model", "32-128-10"],
    "model wrong output width": ["train", "--model", "64-128-9"],
    "zero lr": ["train", "--lr", "0"],
    "negative lr": ["train", "--lr", "-1e-3"],
    "nan lr": ["train", "--lr", "nan"],
    "zero epochs": ["train", "--epochs", "0"],
    "fractional epochs": ["train", "--epochs", "1.5"],
    "negative batch size": ["train", "--batch-size", "-5"],
    "negative weight decay": ["train", "--weight-decay", "-1"],
    "missing mnist dir": ["train", "--dataset", "mnist:/no/such/dir"],
    "empty mnist spec": ["train", "--dataset", "mnist:"],
    "momentum for adam": ["train", "--optimizer", "adam", "--momentum", "0.9"],
    "resume without checkpoint": ["train", "--resume"],
    "numpy on a gpu": ["train", "--device", "cuda:3"],
    "unknown dtype": ["train", "--dtype", "float8"],
    "gradcheck backend": ["gradcheck", "--backend", "nope"],
    "bench config": ["bench", "--configs", "nope"],
}


@pytest.mark.parametrize("argv", BAD.values(), ids=BAD.keys())
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("arrayprop") and "error:" in err
    assert "Traceback" not in err + captured.out
    assert "epoch" not in captured.out  # failed before training


def test_model_mismatch_message_says_what_fits(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "32-128-10"])
    err = capsys.readouterr().err
    assert "64 input features and 10 classes" in err and "64-128-10" in err


def test_empty_mnist_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--dataset", f"mnist:{tmp_path}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err


def test_backend_not_installed(capsys):
    name = _unusable_backend()
    if name is None:
        pytest.skip("every backend is usable here")
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--backend", name])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err


def test_unwritable_save_path_is_a_clean_error(tmp_path, capsys):
    target = tmp_path / "missing-dir" / "m.npz"
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["train", "--dataset", "xor", "--epochs", "1", "--no-progress", "--save", str(target)]
        )
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- the console entry point ----------------------------------------------------------------------


def test_python_m_arrayprop_runs(tmp_path):
    src = str(Path(ap.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = ["train", "--dataset", "xor", "--epochs", "2", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-m", "arrayprop", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 0.5 <= _accuracy(done.stdout) <= 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "0"], "argument --lr: must be a finite number > 0, got 0"),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
        (["--lr", "abc"], "argument --lr: must be a finite number > 0, got 'abc'"),
        (["--epochs", "1.5"], "argument --epochs: must be an int >= 1, got '1.5'"),
        (["--batch-size", "-5"], "argument --batch-size: must be an int >= 1, got -5"),
        (["--momentum", "-1"], "argument --momentum: must be a finite number >= 0, got -1"),
    ],
)
def test_number_flags_name_the_allowed_range(argv, message, capsys):
    # The allowed range is the API's constraint, described in the same words.
    with pytest.raises(SystemExit):
        cli.main(["train", *argv])
    assert f"arrayprop train: error: {message} (see" in capsys.readouterr().err


def test_info_says_whether_the_cpu_has_bf16_units_and_which_path_uses_them(capsys):
    from arrayprop.backends import cpu
    from arrayprop.cli.info import bf16_report

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    units = cpu.bf16_units()
    line = re.search(r"^bfloat16 matrix units on the CPU: (.*)$", out, flags=re.M).group(1)
    assert line.startswith(" and ".join(units["units"]) if units["units"] else "none")
    assert re.search(r"^bfloat16 GEMMs on torch .*: (oneDNN|no oneDNN)", out, flags=re.M)
    # Each kind of CPU, from its flags alone.
    amx = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "amx_bf16", "avx512_bf16"})
    avx512 = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
    avx2 = frozenset({"avx", "avx2", "fma"})
    report = bf16_report(amx, "onednn AVX512")
    assert report[0].endswith(": AMX-BF16 and AVX512-BF16") and "on those units" in report[1]
    report = bf16_report(avx512, "onednn AVX512")
    assert "AVX-512 only" in report[0] and "converted to float32" in report[1]
    report = bf16_report(avx2, "aten AVX2")
    assert "no AVX-512 either" in report[0] and "as float32 GEMMs" in report[1]
    assert bf16_report(frozenset({"avx512_bf16"}), "x")[0].endswith(": AVX512-BF16")


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    from arrayprop.backends import cpu

    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu.cpu_flags(f) == {"fpu", "avx2", "amx_bf16"}
    assert cpu.bf16_units(cpu.cpu_flags(f))["units"] == ["AMX-BF16"]
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu.cpu_flags(tmp_path / "arm") is None
    assert cpu.cpu_flags(tmp_path / "missing") is None
    assert cpu.bf16_units(frozenset()) == {"known": True, "units": [], "avx512": False}
