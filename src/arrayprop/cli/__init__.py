"""The ``arrayprop`` command: ``train``, ``info``, ``gradcheck`` and ``bench``.

``arrayprop train`` with no arguments trains a 64-256-10 ReLU network on the bundled 8x8 digits
with AdamW and a cosine learning-rate schedule, and reports the test loss and accuracy; every
choice is a flag (``arrayprop train --help``). Bad arguments end with a one-line message on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from arrayprop import __version__, data, kernels
from arrayprop.backends import BACKENDS, describe_backends, get_backend
from arrayprop.checkpoint import format as ckpt
from arrayprop.errors import ArrayPropError
from arrayprop.nn.layers import ACTIVATIONS, mlp
from arrayprop.nn.losses import BinaryCrossEntropy, get_loss
from arrayprop.optim.optimizers import OPTIMIZERS, get_optimizer
from arrayprop.optim.schedules import CosineAnnealingLR
from arrayprop.training.api import evaluate, fit

__all__ = ["build_parser", "main"]

#: Defaults of ``arrayprop train``, confirmed on validation accuracy alone by
#: scripts/tune_defaults.py (table and decision in docs/training.md); then, evaluated once:
#: 97.21 % test accuracy on the digits with --seed 0, in about a second on one CPU core.
DEFAULT_HIDDEN = (256,)
DEFAULT_OPTIMIZER = "adamw"
DEFAULT_LR = 2e-3
#: AdamW's decoupled decay for the CLI default (the class default 0.01 overfits the digits more).
DEFAULT_ADAMW_DECAY = 0.1
DEFAULT_EPOCHS = 40
DEFAULT_BATCH = 32
#: Worst relative error ``arrayprop gradcheck`` accepts.
GRADCHECK_TOLERANCE = 1e-6
DTYPES = ("float32", "float64", "float16", "bfloat16")


class UsageError(Exception):
    """A bad command line found after parsing (reported like an argparse error)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())


# -- argument types -----------------------------------------------------------------------------


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _model_spec(text: str) -> list[int]:
    """``"64-128-10"`` -> [64, 128, 10]."""
    parts = text.replace(",", "-").split("-")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer widths such as 64-128-10"
        ) from None
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: need at least two positive widths (input-...-output), e.g. 64-128-10"
        )
    return sizes


DATASETS = ("digits", "spirals", "xor", "mnist:DIR")


def _dataset_spec(text: str) -> str:
    if text in ("digits", "spirals", "xor"):
        return text
    if text.startswith("mnist:"):
        directory = text[len("mnist:") :]
        if not directory:
            raise argparse.ArgumentTypeError("mnist needs a directory: --dataset mnist:DIR")
        if not Path(directory).is_dir():
            raise argparse.ArgumentTypeError(f"mnist directory {directory!r} does not exist")
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(DATASETS)}")


# -- the parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``arrayprop`` argument parser (sub-commands train, info, gradcheck, bench)."""
    parser = _Parser(
        prog="arrayprop",
        description="Matrix-form backpropagation on NumPy, CuPy, PyTorch, JAX, array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"arrayprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,info,gradcheck,bench}")

    train = sub.add_parser(
        "train",
        help="train an MLP and report test metrics",
        description="Train an MLP on a data set and report the test loss and accuracy. The "
        "defaults train on the bundled 8x8 digits and reach about 97-98% test accuracy.",
    )
    D = " (default: %(default)s)"
    train.add_argument(
        "--dataset",
        type=_dataset_spec,
        default="digits",
        metavar="{digits,spirals,xor,mnist:DIR}",
        help="bundled digits, synthetic spirals / xor, or MNIST IDX files in DIR" + D,
    )
    train.add_argument(
        "--model",
        type=_model_spec,
        default=None,
        metavar="SIZES",
        help="layer widths, e.g. 64-128-10; the first must be the data's features and the last "
        f"its classes (default: features-{'-'.join(map(str, DEFAULT_HIDDEN))}-classes)",
    )
    train.add_argument(
        "--activation", choices=sorted(ACTIVATIONS), default="relu", help="hidden activation" + D
    )
    train.add_argument(
        "--loss",
        choices=["softmax-ce", "mse", "rmse", "l2", "bce"],
        default="softmax-ce",
        help="softmax-ce on integer labels; the others on one-hot targets (bce on logits)" + D,
    )
    train.add_argument(
        "--optimizer", choices=sorted(OPTIMIZERS), default=DEFAULT_OPTIMIZER, help="optimizer" + D
    )
    train.add_argument("--lr", type=_positive(float), default=DEFAULT_LR, help="learning rate" + D)
    train.add_argument(
        "--schedule",
        choices=["cosine", "none"],
        default="cosine",
        help="learning-rate schedule over the epochs (cosine: anneal to 0)" + D,
    )
    train.add_argument(
        "--momentum", type=_non_negative_float, default=None, help="sgd / rmsprop momentum"
    )
    train.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=None,
        help=f"weight decay (default: {DEFAULT_ADAMW_DECAY:g} for adamw, else the optimizer's)",
    )
    train.add_argument("--epochs", type=_positive(int), default=DEFAULT_EPOCHS, help="epochs" + D)
    train.add_argument(
        "--batch-size", type=_positive(int), default=DEFAULT_BATCH, help="samples per step" + D
    )
    train.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="array library (default: $ARRAYPROP_BACKEND, else numpy)",
    )
    train.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
    train.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype" + D)
    train.add_argument("--seed", type=int, default=0, help="seed of weights and shuffling" + D)
    train.add_argument("--save", metavar="PATH", default=None, help="write the trained model")
    train.add_argument(
        "--checkpoint", metavar="PATH", default=None, help="checkpoint every epoch to PATH"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from --checkpoint if it exists"
    )
    train.add_argument("--plot", metavar="PNG", default=None, help="plot loss/accuracy curves")
    train.add_argument("--no-progress", action="store_true", help="print only the results")
    train.set_defaults(run=_cmd_train)

    info = sub.add_parser("info", help="versions, backends, devices and BLAS")
    info.set_defaults(run=_cmd_info)

    check = sub.add_parser(
        "gradcheck",
        help="finite-difference check of every layer, loss and a deep model",
        description="Compare every layer's and loss's backward() with central differences in "
        f"float64; exit status 1 if any relative error exceeds {GRADCHECK_TOLERANCE:g}.",
    )
    check.add_argument("--backend", choices=BACKENDS, default=None)
    check.add_argument("--device", default=None)
    check.set_defaults(run=_cmd_gradcheck)

    bench = sub.add_parser(
        "bench",
        help="train-step throughput per backend, with GEMM ceiling and PyTorch peer",
        description="Time training steps per backend and configuration (see docs/benchmarks.md).",
    )
    from arrayprop import bench as _bench

    _bench.add_arguments(bench)
    bench.set_defaults(run=_bench.run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``arrayprop`` command line; returns the exit status.

    User errors (bad options, unknown names, a missing backend or file) raise ``SystemExit(2)``
    after one line on stderr; real bugs still show their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: train, info, gradcheck or bench")
    prog = f"arrayprop {args.command}"
    try:
        return int(args.run(args) or 0)
    except (ArrayPropError, ValueError, UsageError) as exc:
        parser.exit(2, f"{prog}: error: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted\n")


# -- train --------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A train/test split on the host, inputs already preprocessed."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    mean: np.ndarray
    scale: float


def load_dataset(spec: str) -> Dataset:
    """Load ``digits``, ``spirals``, ``xor`` or ``mnist:DIR`` and preprocess it.

    Every input is centred by the training mean of its feature and divided by one overall
    training standard deviation. (Per-feature scaling would blow up the near-constant border
    pixels of the digits into noise: it costs about 1 % test accuracy there.)
    """
    if spec == "digits":
        (x_tr, y_tr), (x_te, y_te) = data.load_digits(seed=0)
    elif spec.startswith("mnist:"):
        directory = spec[len("mnist:") :]
        try:
            x_tr, y_tr = data.load_mnist(directory, "train")
            x_te, y_te = data.load_mnist(directory, "test")
        except FileNotFoundError as exc:
            raise UsageError(f"--dataset {spec}: {exc}") from exc
    else:
        x, y = data.make_spirals(n=600, seed=0) if spec == "spirals" else data.make_xor(400)
        (x_tr, y_tr), (x_te, y_te) = data.train_val_split(x, y, 0.25, seed=0, stratify=True)
    mean = x_tr.mean(axis=0)
    scale = float((x_tr - mean).std()) or 1.0
    return Dataset(
        name=spec.split(":")[0],
        x_train=((x_tr - mean) / scale).astype(np.float32),
        y_train=y_tr,
        x_test=((x_te - mean) / scale).astype(np.float32),
        y_test=y_te,
        classes=int(max(y_tr.max(), y_te.max())) + 1,
        mean=mean.astype(np.float32),
        scale=scale,
    )


def _sizes(args: argparse.Namespace, ds: Dataset) -> list[int]:
    features = ds.x_train.shape[1]
    if args.model is None:
        return [features, *DEFAULT_HIDDEN, ds.classes]
    sizes = list(args.model)
    if sizes[0] != features or sizes[-1] != ds.classes:
        hidden = "-".join(map(str, sizes[1:-1])) or "..."
        raise UsageError(
            f"--model {'-'.join(map(str, sizes))}: {ds.name} has {features} input features "
            f"and {ds.classes} classes, so the model must read {features}-{hidden}-{ds.classes}"
        )
    return sizes


def _loss_and_targets(name: str, ds: Dataset) -> tuple[Any, np.ndarray, np.ndarray]:
    """The loss object and the targets it takes (labels, or one-hot rows)."""
    if name == "softmax-ce":
        return get_loss(name), ds.y_train, ds.y_test
    # The network's last layer is linear, so binary cross-entropy reads its outputs as logits.
    loss = BinaryCrossEntropy(from_logits=True) if name == "bce" else get_loss(name)
    return (
        loss,
        data.one_hot(ds.y_train, ds.classes),
        data.one_hot(ds.y_test, ds.classes),
    )


def _optimizer(args: argparse.Namespace, params: list[Any]) -> Any:
    kwargs: dict[str, Any] = {"lr": args.lr}
    if args.optimizer == "adamw" and args.weight_decay is None:
        kwargs["weight_decay"] = DEFAULT_ADAMW_DECAY
    for flag, key in (("momentum", "momentum"), ("weight_decay", "weight_decay")):
        value = getattr(args, flag)
        if value is not None:
            kwargs[key] = value
    return get_optimizer(args.optimizer, params, **kwargs)


def _check_plot_available(path: str | None) -> None:
    if path is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'arrayprop[plot]'")


def _check_output(flag: str, path: str | None) -> None:
    """Fail before training, not after, when an output file cannot be created."""
    if path is None:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {str(parent)!r} does not exist")
    if Path(path).is_dir():
        raise UsageError(f"{flag} {path}: is a directory")


#: Share of the training set held out for the per-epoch validation metrics.
VALIDATION_FRACTION = 0.1


def _cmd_train(args: argparse.Namespace) -> int:
    _check_plot_available(args.plot)
    for flag in ("save", "checkpoint", "plot"):
        _check_output(f"--{flag}", getattr(args, flag))
    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH")
    be = get_backend(args.backend, device=args.device, dtype=args.dtype)
    ds = load_dataset(args.dataset)
    sizes = _sizes(args, ds)
    loss, y_train, y_test = _loss_and_targets(args.loss, ds)
    # The per-epoch validation numbers come from 10% of the training set; the test set is
    # touched once, after training, so the reported test accuracy was never looked at before.
    (x_fit, y_fit), validation = data.train_val_split(
        ds.x_train, y_train, VALIDATION_FRACTION, seed=args.seed, stratify=y_train.ndim == 1
    )
    model = mlp(sizes, args.activation, seed=args.seed, backend=be)
    optimizer = _optimizer(args, model.parameters())
    schedule = CosineAnnealingLR(optimizer, args.epochs) if args.schedule == "cosine" else None
    say = print if not args.no_progress else _quiet
    say(
        f"{ds.name}: {len(y_fit)} train / {len(validation[1])} validation / "
        f"{len(ds.y_test)} test samples, "
        f"{ds.x_train.shape[1]} features, {ds.classes} classes"
    )
    say(f"model {'-'.join(map(str, sizes))} {args.activation} on {be}; {optimizer!r}")
    start = time.perf_counter()
    history = fit(
        model,
        x_fit,
        y_fit,
        loss=loss,
        optimizer=optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        validation_data=validation,
        metrics=("accuracy",),
        progress=None if args.no_progress else True,
        checkpoint=args.checkpoint,
        resume=args.resume,
        schedule=schedule,
    )
    seconds = time.perf_counter() - start
    result = evaluate(model, ds.x_test, y_test, loss=loss, metrics=("accuracy",))
    print(
        f"test loss {result['loss']:.4f}  test accuracy {100 * result['accuracy']:.2f}%  "
        f"({len(history)} epochs in {seconds:.1f} s)"
    )
    if history.interrupted:
        print("training was interrupted; the results are those of the last completed step")
    if args.save:
        extra = {
            "dataset": args.dataset,
            "input_mean": ds.mean,
            "input_scale": ds.scale,
            "classes": ds.classes,
            "loss": args.loss,
            "history": history.as_dict(),
            "test": result,
        }
        ckpt.save(model, args.save, optimizer=optimizer, extra=extra)
        print(f"saved {args.save}")
    if args.plot:
        plot_history(history, args.plot, title=f"{ds.name} {'-'.join(map(str, sizes))}")
        print(f"wrote {args.plot}")
    return 0


def _quiet(*_: Any, **__: Any) -> None:
    """A print that prints nothing (``--no-progress``)."""


def plot_history(history: Any, path: str | os.PathLike[str], title: str = "") -> None:
    """Write a PNG with the loss and accuracy curves (training and validation) of a History."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    epochs = history.epochs
    for ax, key, label in zip(
        fig.subplots(1, 2), ("loss", "accuracy"), ("loss", "accuracy"), strict=True
    ):
        for prefix, name in (("", "train"), ("val_", "test")):
            values = history.history.get(prefix + key)
            if values is not None:
                ax.plot(epochs, [math.nan if v is None else v for v in values], label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)


# -- info ---------------------------------------------------------------------------------------


def blas_report() -> str:
    """NumPy's BLAS as ``numpy.show_config`` records it, in one line."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
    except Exception:  # older NumPy, or a build without the record
        return "unknown"
    text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    detail = blas.get("openblas configuration")
    return f"{text} ({detail})" if detail else text


def _cmd_info(args: argparse.Namespace) -> int:
    print(f"arrayprop {__version__}")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.platform()}, {os.cpu_count()} CPUs"
    )
    print(f"NumPy {np.__version__}, BLAS: {blas_report()}")
    print(f"plain SGD folded into the weight-gradient GEMM on numpy: {kernels.fused_sgd_status()}")
    print("backends:")
    rows = describe_backends()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = "usable" if r["usable"] else ("installed" if r["installed"] else "missing")
        version = r["version"] or "-"
        where = ", ".join(r["devices"]) if r["usable"] else r["note"]
        print(f"  {r['name']:<{width}}  {version:<12} {status:<9}  {where}")
    return 0


# -- gradcheck ----------------------------------------------------------------------------------


def gradcheck_cases(be: Any) -> list[tuple[str, Any, Any, Any, Any]]:
    """(name, layer or loss, x, y, loss) for every layer, every loss and two deep models.

    ``be`` is a float64 backend; inputs are drawn from a fixed seed and kept away from the
    kinks of ReLU / LeakyReLU (|z| > 0.05), where a central difference is not a derivative.
    """
    from arrayprop.nn import layers as L
    from arrayprop.nn import losses

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    x = be.asarray(np.where(np.abs(x) < 0.05, 0.5, x))
    labels = rng.integers(0, 3, 5)
    onehot = data.one_hot(labels, 3, dtype=np.float64)
    logits = be.asarray(rng.standard_normal((5, 3)))
    probs = be.asarray(rng.uniform(0.1, 0.9, (5, 3)))
    cases: list[tuple[str, Any, Any, Any, Any]] = [
        ("Dense(4, 3)", L.Dense(4, 3, seed=1, backend=be), x, None, None),
        ("ReLU", L.ReLU(), x, None, None),
        ("LeakyReLU(0.1)", L.LeakyReLU(0.1), x, None, None),
        ("Sigmoid", L.Sigmoid(), x, None, None),
        ("Tanh", L.Tanh(), x, None, None),
        ("Identity", L.Identity(), x, None, None),
        ("Softmax", L.Softmax(), x, None, None),
        ("L2Loss(sum)", losses.L2Loss("sum"), logits, onehot, None),
        ("L2Loss(mean)", losses.L2Loss("mean"), logits, onehot, None),
        ("MSE", losses.MSE(), logits, onehot, None),
        ("RMSE", losses.RMSE(), logits, onehot, None),
        ("BCE(probabilities)", losses.BinaryCrossEntropy(), probs, onehot, None),
        ("BCE(logits)", losses.BinaryCrossEntropy(from_logits=True), logits, onehot, None),
        ("SoftmaxCE(labels)", losses.SoftmaxCrossEntropy(), logits, labels, None),
        ("SoftmaxCE(one-hot)", losses.SoftmaxCrossEntropy(), logits, onehot, None),
    ]
    for act, loss in (("tanh", losses.SoftmaxCrossEntropy()), ("sigmoid", losses.MSE())):
        model = mlp([4, 8, 7, 6, 3], act, seed=2, backend=be)
        target = labels if isinstance(loss, losses.SoftmaxCrossEntropy) else onehot
        cases.append((f"mlp 4-8-7-6-3 {act} + {loss!r}", model, x, target, loss))
    return cases


def run_gradchecks(backend: Any = None, device: Any = None) -> list[tuple[str, float]]:
    """Worst relative error of each :func:`gradcheck_cases` case on a float64 backend."""
    from arrayprop.nn.gradcheck import gradcheck

    be = get_backend(backend, device=device, dtype="float64")
    results = []
    for name, obj, x, y, loss in gradcheck_cases(be):
        errors = gradcheck(obj, x, y, loss=loss)
        results.append((name, max(errors.values())))
    return results


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    be = get_backend(args.backend, device=args.device, dtype="float64")
    print(f"gradient check on {be} (central differences, tolerance {GRADCHECK_TOLERANCE:g})")
    results = run_gradchecks(be)
    width = max(len(name) for name, _ in results)
    failed = 0
    for name, error in results:
        ok = error <= GRADCHECK_TOLERANCE
        failed += not ok
        print(f"  {name:<{width}}  {error:9.2e}  {'ok' if ok else 'FAIL'}")
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
