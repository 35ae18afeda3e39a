"""``arrayprop train --model``: the layer-list grammar (arrayprop.cli.models) and its errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import cli
from arrayprop.cli import models


def _build(text, input_shape=(1, 8, 8), classes=10):
    return models.build(models.parse_model(text), input_shape, classes, seed=0)


def test_widths_form_is_unchanged():
    assert models.parse_model("64-128-10") == [64, 128, 10]
    assert models.parse_model("64,128,10") == [64, 128, 10]


def test_conv_spec_builds_the_layers_with_inferred_shapes():
    spec = models.parse_model(
        "conv16k3p1,relu,conv32k3p1,relu,maxpool2,flatten,dense64,relu,dropout0.3,dense10"
    )
    assert models.reads_images(spec)
    model = models.build(spec, (1, 8, 8), 10, seed=0)
    types = [type(layer) for layer in model.layers]
    assert types == [
        ap.Conv2D, ap.ReLU, ap.Conv2D, ap.ReLU, ap.MaxPool2D, ap.Flatten,
        ap.Dense, ap.ReLU, ap.Dropout, ap.Dense,
    ]  # fmt: skip
    c1, c2, dense, out = (model.layers[i] for i in (0, 2, 6, 9))
    assert tuple(c1.weight.data.shape) == (16, 1, 3, 3)
    assert tuple(c2.weight.data.shape) == (32, 16, 3, 3)
    assert (dense.in_features, dense.out_features) == (32 * 4 * 4, 64)
    assert (out.in_features, out.out_features) == (64, 10)
    assert model.layers[8].p == pytest.approx(0.3)
    x = np.zeros((2, 1, 8, 8), np.float32)
    assert tuple(model.forward(x).shape) == (2, 10)


def test_stride_padding_pooling_and_norms():
    model = _build("conv4k3s2p1,bn,gelu,avgpool2s1,ln,flatten,ln,bn,silu,elu,softplus,dense10")
    conv = model.layers[0]
    assert (conv.stride, conv.padding) == ((2, 2), (1, 1))
    assert isinstance(model.layers[1], ap.BatchNorm2d)
    pool = model.layers[3]
    assert isinstance(pool, ap.AvgPool2D) and (pool.kernel_size, pool.stride) == ((2, 2), (1, 1))
    # conv 8x8 -> 4x4 (stride 2, padding 1), pool 2 stride 1 -> 3x3
    assert model.layers[4].normalized_shape == (4, 3, 3)
    assert model.layers[6].normalized_shape == (36,)
    assert isinstance(model.layers[7], ap.BatchNorm1d)
    assert model.layers[-1].in_features == 36


def test_flat_layer_list_reads_features():
    spec = models.parse_model("dense32,bn,tanh,dropout,dense10")
    assert not models.reads_images(spec)
    model = models.build(spec, (64,), 10, seed=0)
    assert [type(layer) for layer in model.layers] == [
        ap.Dense, ap.BatchNorm1d, ap.Tanh, ap.Dropout, ap.Dense
    ]  # fmt: skip
    assert model.layers[0].in_features == 64 and model.layers[3].p == 0.5


SYNTAX = {
    "conv16,relu,dense10": ("'conv16'", "convCkK[sS][pP]"),
    "convk3,dense10": ("'convk3'", "allowed: denseN"),
    "swish,dense10": ("'swish'", "gelu"),
    "dense,dense10": ("'dense'", "denseN"),
    "dropout1.5,dense10": ("'dropout1.5'", "[0, 1)"),
    "maxpool0,flatten,dense10": ("'maxpool0'", ">= 1"),
    "conv8k3,,dense10": ("empty item", "single commas"),
    "relu2,dense10": ("'relu2'", "allowed"),
}
SHAPES = {
    "dense64,relu": ("64 features", "end with dense10"),
    "conv8k9,flatten,dense10": ("'conv8k9'", "does not fit"),
    "dense32,conv8k3,flatten,dense10": ("'conv8k3'", "before flatten"),
    "conv8k3,relu,dense10": ("'dense10'", "put flatten before it"),
    "conv8k3,relu": ("images of shape (8, 6, 6)", "flatten,dense10"),
    "relu,tanh": ("no dense or conv", "nothing to train"),
    "maxpool16,flatten,dense10": ("'maxpool16'", "does not fit"),
}


@pytest.mark.parametrize(("spec", "words"), {**SYNTAX, **SHAPES}.items(), ids=[*SYNTAX, *SHAPES])
def test_bad_specs_exit_2_naming_the_item(spec, words, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--model", spec, "--epochs", "1"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("arrayprop") and "error:" in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "--model" in err and "Traceback" not in err + captured.out
    assert "epoch" not in captured.out
    for word in words:
        assert word in err, err


def test_conv_on_data_without_images_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--dataset", "xor", "--model", "conv4k1,flatten,dense2"])
    assert exc.value.code == 2
    assert "xor has 2 features and no image shape" in capsys.readouterr().err


def test_train_a_tiny_conv_model(tmp_path, capsys):
    path = tmp_path / "conv.npz"
    argv = ["train", "--model", "conv4k3p1,relu,maxpool2,flatten,dense10", "--epochs", "1"]
    assert cli.main([*argv, "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1x8x8 images" in out
    assert re.search(r"test accuracy \d+\.\d\d%", out)
    loaded = ap.load_checkpoint(path)
    assert isinstance(loaded.model.layers[0], ap.Standardize)  # raw images in
    assert isinstance(loaded.model.layers[1], ap.Conv2D)
    assert list(loaded.extra["input_shape"]) == [1, 8, 8]


def test_train_a_flat_layer_list_and_the_widths_form(capsys):
    assert cli.main(["train", "--model", "dense16,gelu,dense10", "--epochs", "1"]) == 0
    assert cli.main(["train", "--model", "64-16-10", "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "64 features" in out and out.count("test accuracy") == 2
