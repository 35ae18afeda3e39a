"""scripts/tune_defaults.py scores configurations with exactly the pipeline of `arrayprop train`,
and without the test split."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

import arrayprop as ap
from arrayprop import cli

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tune_defaults.py"


@pytest.fixture(scope="module")
def tune():
    spec = importlib.util.spec_from_file_location("tune_defaults", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_defaults_are_what_the_cli_builds(tune):
    args = cli.build_parser().parse_args(["train"])
    ds = cli.load_dataset(args.dataset)
    model = ap.mlp(cli.model_sizes(args, ds), args.activation, seed=0)
    opt = cli.build_optimizer(args, model.parameters())
    expected = tune.defaults()
    assert (opt.name, opt.lr, opt.weight_decay) == (
        expected.optimizer,
        expected.lr,
        expected.weight_decay,
    )
    assert (args.epochs, args.batch_size, args.schedule) == (expected.epochs, 32, "cosine")
    assert (args.model, args.activation, args.loss, args.dtype) == (
        None,
        "relu",
        "softmax-ce",
        "float32",
    )
    assert expected in tune.grid()


def test_training_set_has_no_test_split(tune):
    ds = tune.training_set()
    assert ds.x_test is None and ds.y_test is None
    assert ds.x_train.shape == (1438, 64)


def test_validation_scores_match_the_cli_run(tune, tmp_path, capsys):
    # The CLI stores its History with --save; the script must see the same validation numbers.
    path = tmp_path / "run.npz"
    cli.main(["train", "--epochs", "2", "--seed", "1", "--no-progress", "--save", str(path)])
    capsys.readouterr()
    logged = ap.load_checkpoint(path).extra["history"]["history"]
    config = dataclasses.replace(tune.defaults(), epochs=2)
    acc, loss = tune.validate(config, tune.training_set(), seed=1)
    assert acc == logged["val_accuracy"][-1]
    assert loss == logged["val_loss"][-1]
