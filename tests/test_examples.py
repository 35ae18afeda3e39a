"""The scripts in examples/: each runs with tiny settings and learns what it claims to."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_main_and_is_tested():
    names = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert names == sorted(
        [
            "cnn_digits",
            "digits",
            "linear_regression",
            "logistic_regression",
            "mlp_batchnorm_dropout",
            "vanishing_gradients",
            "xor",
        ]
    )
    for name in names:
        assert callable(_load(name).main)


def test_linear_regression_recovers_the_true_weights(backend_name):
    out = _load("linear_regression").main(
        n=400, epochs=30, backend=backend_name, verbose=False, seed=1
    )
    # The least-squares solution of the same data, computed here by NumPy.
    from arrayprop import data

    x, y, true_w, true_b = data.make_linear_regression(400, 3, noise=0.1, seed=1)
    design = np.c_[x, np.ones(len(x))].astype(np.float64)
    lstsq = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0][:, 0]
    np.testing.assert_allclose(out["weight"][:, 0], lstsq[:3], atol=0.02)
    np.testing.assert_allclose(out["bias"], lstsq[3:], atol=0.02)
    np.testing.assert_allclose(out["weight"], true_w, atol=0.05)
    np.testing.assert_allclose(out["bias"], true_b, atol=0.05)
    assert out["loss"] < 2 * 0.1**2


def _logistic_mle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic regression by Newton's method (IRLS), in float64."""
    design = np.c_[x, np.ones(len(x))].astype(np.float64)
    t = y.astype(np.float64)
    w = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        hessian = (design * (p * (1 - p))[:, None]).T @ design
        w -= np.linalg.solve(hessian, design.T @ (p - t))
    return w


def test_logistic_regression_reaches_the_maximum_likelihood_weights():
    out = _load("logistic_regression").main(n=500, epochs=300, verbose=False)
    mle = _logistic_mle(out["x"], out["y"])
    learnt = np.r_[out["weight"][:, 0], out["bias"]]
    np.testing.assert_allclose(learnt, mle, rtol=0.03, atol=0.03)
    p = 1 / (1 + np.exp(-(out["x"] @ mle[:2] + mle[2])))
    assert out["accuracy"] == pytest.approx(np.mean((p > 0.5) == out["y"]), abs=0.01)


def test_xor_needs_a_hidden_layer():
    out = _load("xor").main(n=200, epochs=40, lr=0.05, verbose=False)
    assert out["hidden"] >= 0.95
    assert out["linear"] <= 0.75


def test_digits_trains_saves_and_reloads(tmp_path, monkeypatch):
    import arrayprop as ap

    seen = []
    fit = ap.fit

    def watched_fit(model, x, y, **kwargs):
        seen.append((x, kwargs.get("validation_data")))
        return fit(model, x, y, **kwargs)

    monkeypatch.setattr(ap, "fit", watched_fit)
    example = _load("digits")
    path = tmp_path / "d.npz"
    out = example.main(hidden=64, epochs=3, save=str(path), verbose=False)
    assert out["accuracy"] > 0.9
    assert out["reloaded_accuracy"] == pytest.approx(out["accuracy"], abs=1e-9)
    assert path.exists()
    # Validation on images held out of the training set, never on the test set.
    ((x_fit, (x_val, _)),) = seen
    (x_train, _), (x_test, _) = example.load()
    rows = {r.tobytes() for r in np.asarray(x_val)}
    assert len(x_val) == round(0.1 * len(x_train)) and len(x_fit) + len(x_val) == len(x_train)
    assert rows <= {r.tobytes() for r in x_train}
    assert not rows & {r.tobytes() for r in x_test}
    assert not rows & {r.tobytes() for r in np.asarray(x_fit)}
    assert 0.8 < out["val_accuracy"] <= 1


def test_cnn_digits_learns_in_one_epoch(capsys):
    # Without the shifted copies (five times the data): the smoke run stays cheap.
    out = _load("cnn_digits").main(epochs=1, shift=0, seed=0)
    # One epoch of the small CNN already beats chance (10 %) by far; the defaults reach ≥ 98.5 %.
    assert out["accuracy"] > 0.7
    assert out["val_accuracy"] > 0.7
    printed = capsys.readouterr().out
    assert re.search(r"validation accuracy \d+\.\d\d%", printed)
    assert re.search(r"test accuracy \d+\.\d\d%\n\Z", printed)


def test_cnn_digits_shifts_and_folds():
    module = _load("cnn_digits")
    x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 1, 8, 8) + 1
    y = np.array([3, 7])
    xs, ys = module.shifted(x, y, 1)
    assert xs.shape == (10, 1, 8, 8) and list(ys) == [3, 7] * 5
    np.testing.assert_array_equal(xs[:2], x)
    # Down by one: row r of the copy is row r - 1 of the image; the new top row is background.
    np.testing.assert_array_equal(xs[2:4, :, 1:], x[:, :, :-1])
    assert (xs[2:4, :, 0] == x.min()).all() and (xs[4:6, :, -1] == x.min()).all()
    np.testing.assert_array_equal(xs[8:10, :, :, :-1], x[:, :, :, 1:])  # left by one
    assert module.shifted(x, y, 0)[0] is x
    # With the diagonals: the same four first, then down-right, down-left, up-right, up-left.
    xd, yd = module.shifted(x, y, 1, diagonal=True)
    assert xd.shape == (18, 1, 8, 8) and list(yd) == [3, 7] * 9
    np.testing.assert_array_equal(xd[:10], xs)
    np.testing.assert_array_equal(xd[10:12, :, 1:, 1:], x[:, :, :-1, :-1])  # down-right
    assert (xd[10:12, :, 0] == x.min()).all() and (xd[10:12, :, :, 0] == x.min()).all()
    np.testing.assert_array_equal(xd[16:18, :, :-1, :-1], x[:, :, 1:, 1:])  # up-left
    assert (xd[16:18, :, -1] == x.min()).all() and (xd[16:18, :, :, -1] == x.min()).all()
    assert len({xd[i].tobytes() for i in range(0, 18, 2)}) == 9  # nine distinct copies
    labels = np.repeat(np.arange(10), 30)
    parts = module.folds(labels, 3, seed=1)
    every = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(every, np.arange(300))  # disjoint and covering
    for part in parts:
        assert np.bincount(labels[part], minlength=10).tolist() == [10] * 10  # stratified


def test_cnn_digits_builds_every_candidate():
    # Every --select candidate builds and maps (n, 1, 8, 8) images to (n, 10) scores.
    module = _load("cnn_digits")
    x = np.zeros((2, 1, 8, 8), dtype=np.float32)
    sizes = set()
    for change in module.CANDIDATES:
        s = {**module.BASE, **change}
        model = module.build(s["hidden"], s["p"], bn=s["bn"], widths=s["widths"], third=s["third"])
        assert model.eval()(x).shape == (2, 10)
        sizes.add(sum(int(np.prod(p.shape)) for p in model.parameters()))
    assert len(sizes) == 3  # the current network, the wider one, the one with a third conv


def test_mlp_batchnorm_dropout_learns_in_two_epochs(capsys):
    module = _load("mlp_batchnorm_dropout")
    out = module.main(hidden=64, epochs=2, seed=0)
    assert out["accuracy"] > 0.8
    assert re.search(r"test accuracy \d+\.\d\d%\n\Z", capsys.readouterr().out)
    # The model really has the two layers the example is about.
    model = module.build(32, 0.5)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"BatchNorm1d", "Dropout"} <= kinds


def test_vanishing_gradients_in_the_deep_sigmoid_net(tmp_path, capsys):
    png = tmp_path / "g.png"
    norms = _load("vanishing_gradients").main(depth=5, width=16, epochs=1, plot=str(png))
    sigmoid, relu = norms["sigmoid"], norms["relu"]
    assert len(sigmoid) == len(relu) == 6
    # Each sigmoid layer scales δ by at most 1/4 (times the weights), so the first layer's
    # gradient is orders of magnitude below the last one's; ReLU keeps them comparable.
    assert sigmoid[0] < 0.01 * sigmoid[-1]
    assert relu[0] > 0.1 * relu[-1]
    out = capsys.readouterr().out
    assert "‖∂C/∂W‖" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:4] == b"\x89PNG"
