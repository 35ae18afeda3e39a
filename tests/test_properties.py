"""Property-based tests (hypothesis): arbitrary input never crashes arrayprop from the inside.

Part 1 throws random shapes, dtypes (bool, int, float16/32/64), placements (host or backend
arrays) and values (moderate, NaN, ±inf, huge, subnormal) at the public functions. Every call
must either give a correct result or raise one of arrayprop's documented exceptions (an
:class:`~arrayprop.errors.ArrayPropError`, or a ValueError / TypeError raised by arrayprop's own
code with a message): never an exception from deep inside NumPy, torch or array_api_strict.
Results on moderate input (finite, |v| ≤ 8) are checked against NumPy math written here, and
must come without any warning; NumPy's RuntimeWarnings on NaN / inf / huge input (0·inf in a
matmul, an overflowing square) are the arithmetic's business and are allowed there.

Part 2 checks gradients of random MLPs (1–3 hidden layers, widths 1–6, every activation, every
loss with matching targets, batches of 1–5) against central differences (< 1e-6).

Examples are derandomized (the same every run, no ``.hypothesis`` database), so CI is stable;
``EXAMPLES`` scales every budget. The number run is printed at the end (``pytest -s``).
"""

from __future__ import annotations

import collections
import os
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import arrayprop as ap  # noqa: E402
from arrayprop.data import one_hot  # noqa: E402
from arrayprop.errors import ArrayPropError  # noqa: E402

EXAMPLES = float(os.environ.get("ARRAYPROP_HYPOTHESIS_SCALE", "1"))
_PACKAGE = Path(ap.__file__).resolve().parent
RUNS: collections.Counter = collections.Counter()


def _settings(n: int):
    return settings(
        max_examples=max(1, int(n * EXAMPLES)),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    examples = {k: v for k, v in RUNS.items() if ":" not in k}
    detail = ", ".join(
        f"{k} {v}"
        + (f" ({RUNS[k + ':result']} results, {RUNS[k + ':raised']} documented errors)"
           if RUNS[k + ":result"] + RUNS[k + ":raised"] else "")
        for k, v in sorted(examples.items())
    )  # fmt: skip
    print(f"\nhypothesis examples run: {sum(examples.values())}: {detail}")


# -- strategies ----------------------------------------------------------------------------------

MODEL_DTYPES = ["float32", "float64", "float16", "bfloat16"]
DATA_DTYPES = ["bool", "int8", "uint8", "int32", "int64", "float16", "float32", "float64"]
LIMIT = 8.0  # |v| ≤ LIMIT and finite: "moderate" input, whose results are checked exactly


def _elements(dtype: np.dtype, wild: bool = True):
    """Values of ``dtype``: moderate ones, and with ``wild`` also NaN, ±inf, huge, subnormal."""
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.one_of(st.integers(max(-3, int(info.min)), 3),
                         st.integers(int(info.min), int(info.max)))  # fmt: skip
    width = dtype.itemsize * 8
    finfo = np.finfo(dtype)
    moderate = st.floats(-LIMIT, LIMIT, width=width)
    extreme = st.sampled_from(
        [
            np.nan,
            np.inf,
            -np.inf,
            1e4,
            -1e4,
            float(finfo.max),
            -float(finfo.max),
            float(finfo.smallest_subnormal),
            1e30 if width > 16 else 6e4,
        ]
    )
    return st.one_of(moderate, moderate, moderate, extreme) if wild else moderate


@st.composite
def host_arrays(draw, shape=None, dtypes=DATA_DTYPES):
    """Anything: any of DATA_DTYPES, any shape of up to 3 axes, any values."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype, draw(st.booleans()))))


def _host_dtype(be) -> np.dtype:
    """The NumPy dtype host data of ``be``'s float dtype is drawn in (bfloat16: float32)."""
    return np.dtype("float32" if be.dtype_name == "bfloat16" else be.dtype_name)


@st.composite
def model_inputs(draw, be, shape):
    """(host, array of ``be``): float data of the model's dtype, on its device; any values."""
    dtype = _host_dtype(be)
    host = draw(hnp.arrays(dtype, shape, elements=_elements(dtype, draw(st.booleans()))))
    return host, be.asarray(host)


@st.composite
def any_inputs(draw, be, shape=None):
    """(host, the same as given to arrayprop): junk of any dtype/shape, host or on ``be``."""
    host = draw(host_arrays(shape=shape))
    return host, _place(be, host, draw(st.booleans()))


@st.composite
def valid_targets(draw, loss: str, n: int, k: int):
    if loss == "softmax-ce":
        return draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    if loss.startswith("bce"):
        return draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0, 1)))
    return draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-LIMIT, LIMIT)))


@st.composite
def any_targets(draw, n: int, k: int):
    """Junk, or targets of the right shape with out-of-range values (labels -1 and k)."""
    kind = draw(st.sampled_from(["junk", "labels", "rows"]))
    if kind == "labels":
        return draw(hnp.arrays(np.int64, (n,), elements=st.integers(-1, k)))
    if kind == "rows":
        return draw(host_arrays(shape=(n, k)))
    return draw(host_arrays())


def _moderate(*arrays) -> bool:
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f" and not (np.all(np.isfinite(a)) and np.all(np.abs(a) <= LIMIT)):
            return False
    return True


def _place(be, host: np.ndarray, on_device: bool):
    """``host`` as given, or as an array of ``be`` keeping its dtype (when ``be`` has it)."""
    if not on_device:
        return host
    try:
        dtype = None if host.dtype.kind != "f" else getattr(be.xp, host.dtype.name)
        return be.asarray(host, dtype=dtype)
    except (AttributeError, ArrayPropError):
        return host  # a dtype this backend lacks (array_api_strict has no float16)


def _backend(backend_name: str, dtype: str):
    return ap.get_backend(backend_name, dtype=dtype)


# -- the outcome check ---------------------------------------------------------------------------


def _documented(exc: BaseException) -> bool:
    """An arrayprop exception, or a ValueError / TypeError that arrayprop itself raised."""
    if isinstance(exc, ArrayPropError):
        return True
    if type(exc) in (ValueError, TypeError) and str(exc):
        # Raised by a raise statement of arrayprop's (not by a builtin arrayprop called, such
        # as len() of a float, whose error would also end in an arrayprop frame).
        last = traceback.extract_tb(exc.__traceback__)[-1]
        in_package = Path(last.filename).resolve().is_relative_to(_PACKAGE)
        return in_package and (last.line or "").lstrip().startswith("raise ")
    return False


def _outcome(name: str, call, *, quiet: bool):
    """Run ``call``; return its result, or None when it raised a documented exception.

    ``quiet``: the input is moderate, so any warning is an error too.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if not quiet:
            warnings.simplefilter("ignore", RuntimeWarning)
        try:
            result = call()
        except Exception as exc:
            if not _documented(exc):
                raise AssertionError(
                    f"{name}: undocumented {type(exc).__name__} from inside: {exc}"
                ) from exc
            RUNS[name + ":raised"] += 1
            return None
    RUNS[name + ":result"] += 1
    return result


def _host(be, x) -> np.ndarray:
    return np.asarray(be.to_host(x), dtype=np.float64)


def _any_host(x) -> np.ndarray:
    """A host copy of a result of whichever backend computed it."""
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x, dtype=np.float64)
    return _host(ap.backend_of(x), x)


def _tol(dtype_name: str) -> float:
    return {"float16": 5e-2, "bfloat16": 5e-2, "float32": 1e-4}.get(dtype_name, 1e-10)


# -- part 1: robustness --------------------------------------------------------------------------


@_settings(120)
@given(data=st.data())
def test_dense_forward(backend_name, data):
    RUNS["dense"] += 1
    model_dtype = data.draw(st.sampled_from(MODEL_DTYPES), "model dtype")
    n_in, n_out = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    be = _outcome("dense-setup", lambda: _backend(backend_name, model_dtype), quiet=True)
    if be is None:
        return
    layer = ap.Dense(n_in, n_out, seed=0, backend=be)
    batch = data.draw(st.integers(0, 4), "batch")
    if data.draw(st.booleans(), "valid"):
        host, x = data.draw(model_inputs(be, (batch, n_in)), "x")
    else:
        host, x = data.draw(any_inputs(be), "x")
    out = _outcome("dense", lambda: layer.forward(x), quiet=_moderate(host))
    if out is None:
        return
    # Dense maps (..., n_in) to (..., n_out).
    assert tuple(out.shape) == (*host.shape[:-1], n_out) and out.dtype == be.dtype
    if _moderate(host):
        w, b = _host(be, layer.weight.data), _host(be, layer.bias.data)
        tol = _tol(be.dtype_name)
        expected = _host(be, x) @ w + b
        np.testing.assert_allclose(_host(be, out), expected, rtol=tol, atol=tol * 10)


@_settings(80)
@given(data=st.data())
def test_sequential_forward_and_predict(backend_name, data):
    RUNS["sequential"] += 1
    model_dtype = data.draw(st.sampled_from(MODEL_DTYPES), "model dtype")
    be = _outcome("sequential-setup", lambda: _backend(backend_name, model_dtype), quiet=True)
    if be is None:
        return
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=4), "sizes")
    act = data.draw(st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "identity"]))
    model = ap.mlp(sizes, activation=act, seed=1, backend=be)
    how = data.draw(st.sampled_from(["forward", "predict", "predict batched"]))
    batch = data.draw(st.integers(0, 6), "batch")
    if not data.draw(st.booleans(), "valid"):
        host, x = data.draw(any_inputs(be), "x")
    elif how == "forward":
        host, x = data.draw(model_inputs(be, (batch, sizes[0])), "x")
    else:  # predict takes host data of any float dtype
        host = data.draw(host_arrays((batch, sizes[0]), ["float16", "float32", "float64"]))
        x = host
    size = data.draw(st.integers(-1, 5), "batch_size")
    call = {
        "forward": lambda: model.forward(x),
        "predict": lambda: model.predict(x),
        "predict batched": lambda: model.predict(x, batch_size=size),
    }[how]
    out = _outcome("sequential", call, quiet=_moderate(host))
    if out is None:
        return
    assert tuple(out.shape) == (*host.shape[:-1], sizes[-1]) and out.dtype == be.dtype
    if _moderate(host) and be.dtype_name != "float16":
        assert np.all(np.isfinite(_host(be, out)))


LOSSES = {
    "mse": ap.MSE,
    "rmse": ap.RMSE,
    "l2": ap.L2Loss,
    "l2-mean": lambda: ap.L2Loss(reduction="mean"),
    "bce": ap.BinaryCrossEntropy,
    "bce-logits": lambda: ap.BinaryCrossEntropy(from_logits=True),
    "softmax-ce": ap.SoftmaxCrossEntropy,
}


def _reference_loss(name: str, p: np.ndarray, t: np.ndarray, eps: float) -> float:
    """The loss value written out in NumPy float64 (docs/math.md's formulas)."""
    if name == "softmax-ce":
        m = p.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(p - m).sum(axis=1, keepdims=True)))[:, 0]
        return float(np.mean(lse - p[np.arange(len(t)), t]))
    d = p - t
    if name == "mse":
        return float(np.mean(d**2))
    if name == "rmse":
        return float(np.sqrt(np.mean(d**2)))
    if name == "l2":
        return float(0.5 * np.sum(d**2))
    if name == "l2-mean":
        return float(0.5 * np.sum(d**2) / p.shape[0])
    if name == "bce-logits":
        return float(np.mean(np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))))
    q = np.clip(p, eps, 1 - eps)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log1p(-q)))


@_settings(150)
@given(data=st.data())
def test_losses(backend_name, data):
    RUNS["losses"] += 1
    name = data.draw(st.sampled_from(sorted(LOSSES)), "loss")
    model_dtype = data.draw(st.sampled_from(MODEL_DTYPES), "dtype")
    be = _outcome("losses-setup", lambda: _backend(backend_name, model_dtype), quiet=True)
    if be is None:
        return
    n, k = data.draw(st.integers(0, 4), "n"), data.draw(st.integers(1, 4), "k")
    if data.draw(st.booleans(), "valid"):
        host, pred = data.draw(model_inputs(be, (n, k)), "pred")
        target = data.draw(valid_targets(name, n, k), "target")
    else:
        host, pred = data.draw(any_inputs(be), "pred")
        rows, cols = (*host.shape, 1, 1)[:2]
        target = data.draw(any_targets(rows, cols), "target")
    quiet = _moderate(host, target)
    result = _outcome("losses", lambda: LOSSES[name]().value_and_grad(pred, target), quiet=quiet)
    if result is None:
        return
    value, grad = result
    assert tuple(value.shape) == () and tuple(grad.shape) == tuple(host.shape)
    if quiet:
        v, g = float(_any_host(value)), _any_host(grad)
        assert np.isfinite(v) and np.all(np.isfinite(g))
        xp = np if isinstance(pred, np.ndarray) else ap.backend_of(pred).xp
        eps = float(xp.finfo(pred.dtype).eps)  # BCE clips to [eps, 1 − eps] in pred's dtype
        t = target if name == "softmax-ce" else np.asarray(target, np.float64)
        expected = _reference_loss(name, _any_host(pred), t, eps)
        tol = _tol(next(d for d in MODEL_DTYPES if d in str(value.dtype)))
        assert v == pytest.approx(expected, rel=tol, abs=tol * 10)


@_settings(80)
@given(data=st.data())
def test_train_step(backend_name, data):
    RUNS["train_step"] += 1
    be = _backend(backend_name, data.draw(st.sampled_from(["float32", "float64"]), "dtype"))
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=2, max_size=3), "sizes")
    model = ap.mlp(sizes, seed=2, backend=be)
    name = data.draw(st.sampled_from(sorted(LOSSES)), "loss")
    valid = data.draw(st.booleans(), "valid")
    lrs = [0.1, 1e-3] if valid else [0.1, 0.0, -1.0, float("nan"), 1e30]
    lr = data.draw(st.sampled_from(lrs), "lr")
    opt = _outcome("train_step-setup", lambda: ap.SGD(model.parameters(), lr=lr), quiet=True)
    if opt is None:
        return
    n = data.draw(st.integers(1, 4), "batch")
    if valid:
        host, x = data.draw(model_inputs(be, (n, sizes[0])), "x")
        y = data.draw(valid_targets(name, n, sizes[-1]), "y")
    else:
        host, x = data.draw(any_inputs(be), "x")
        y = data.draw(any_targets(n, sizes[-1]), "y")
    before = [be.to_host(p.data).copy() for p in model.parameters()]
    moderate = _moderate(host, y) and lr <= 0.1
    twin = ap.mlp(sizes, seed=2, backend=be)
    twin_opt = ap.SGD(twin.parameters(), lr=lr)
    value = _outcome(
        "train_step",
        lambda: ap.train_step(model, LOSSES[name](), opt, x, y, keep_grads=True),
        quiet=moderate,
    )
    if value is None:
        return
    assert tuple(value.shape) == () and value.dtype == be.dtype
    if moderate:
        assert np.isfinite(float(be.to_host(value)))
        for p, w in zip(model.parameters(), before, strict=True):
            # The SGD step: W_new = W − η ∂C/∂W, with the gradient the step left in p.grad.
            expected = w - lr * be.to_host(p.grad)
            np.testing.assert_allclose(be.to_host(p.data), expected, rtol=1e-5, atol=1e-6)
        # The default step (plain SGD folded into backward where the backend can) agrees.
        twin_value = ap.train_step(twin, LOSSES[name](), twin_opt, x, y)
        assert float(be.to_host(twin_value)) == float(be.to_host(value))
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            np.testing.assert_allclose(be.to_host(q.data), be.to_host(p.data), rtol=1e-5, atol=1e-6)


@_settings(150)
@given(
    labels=host_arrays(dtypes=["bool", "int8", "uint8", "int64", "float32", "float64"]),
    num_classes=st.one_of(st.none(), st.integers(-2, 12)),
)
def test_one_hot(labels, num_classes):
    RUNS["one_hot"] += 1
    out = _outcome("one_hot", lambda: one_hot(labels, num_classes), quiet=_moderate(labels))
    if out is None:
        return
    k = out.shape[-1]
    assert out.shape == (*labels.shape, k) and out.dtype == np.float32
    if labels.size == 0:
        return
    # Independent reference: row i has its single 1 at column labels[i].
    ints = labels.astype(np.int64).reshape(-1)
    assert np.all((0 <= ints) & (ints < k))
    expected = np.zeros((ints.size, k), dtype=np.float32)
    expected[np.arange(ints.size), ints] = 1
    np.testing.assert_array_equal(out.reshape(-1, k), expected)


@_settings(40)
@given(data=st.data())
def test_fit_with_tiny_epochs(backend_name, data):
    RUNS["fit"] += 1
    be = _backend(backend_name, data.draw(st.sampled_from(["float32", "float64"]), "dtype"))
    n_in, n_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    model = ap.mlp([n_in, 4, n_out], seed=3, backend=be)
    name = data.draw(st.sampled_from(["softmax-ce", "mse", "bce-logits", "l2"]), "loss")
    if name == "softmax-ce" and n_out == 1:
        name = "mse"
    n = data.draw(st.integers(1, 9), "samples")
    if data.draw(st.booleans(), "valid"):
        host = data.draw(host_arrays((n, n_in), ["float32", "float64", "int64"]), "x")
        x = _place(be, host, data.draw(st.booleans(), "x on device"))
        y = data.draw(valid_targets(name, n, n_out), "y")
        epochs = data.draw(st.sampled_from([1, 2]), "epochs")
        batch = data.draw(st.sampled_from([None, 1, 4]), "batch_size")
    else:
        host, x = data.draw(any_inputs(be), "x")
        y = data.draw(any_targets(n, n_out), "y")
        epochs = data.draw(st.sampled_from([1, 0, -1]), "epochs")
        batch = data.draw(st.sampled_from([None, 4, 0, -2]), "batch_size")
    history = _outcome(
        "fit",
        lambda: ap.fit(
            model,
            x,
            y,
            loss=LOSSES[name](),
            optimizer="sgd",
            epochs=epochs,
            batch_size=batch,
            progress=None,
            seed=0,
        ),
        quiet=_moderate(host, y),
    )
    if history is None:
        return
    assert history.epochs == list(range(1, epochs + 1))
    if _moderate(host, y):
        assert all(np.isfinite(v) for v in history.loss)


# -- part 2: gradients of random architectures ---------------------------------------------------

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "identity"]
KINKED = ("relu", "leaky_relu")
GRAD_LOSSES = ["mse", "rmse", "l2", "l2-mean", "bce", "bce-logits", "softmax-ce", "none"]


@st.composite
def problems(draw):
    """A random MLP, loss, batch and matching targets (all host float64)."""
    hidden = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3), "hidden widths")
    n_in = draw(st.integers(1, 6), "inputs")
    loss = draw(st.sampled_from(GRAD_LOSSES), "loss")
    n_out = 1 if loss == "bce" else draw(st.integers(1 if loss != "softmax-ce" else 2, 5))
    act = draw(st.sampled_from(ACTIVATIONS), "activation")
    batch = draw(st.integers(1, 5), "batch")
    seed = draw(st.integers(0, 2**16), "seed")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    if loss == "softmax-ce":
        y = rng.integers(0, n_out, batch)
    elif loss in ("bce", "bce-logits"):
        y = rng.uniform(0, 1, (batch, n_out))
    else:
        y = rng.standard_normal((batch, n_out))
    return [n_in, *hidden, n_out], act, loss, x, y, seed


def _pre_activations(model, be, x):
    """Host copies of every Dense output for input x (where a ReLU kink could sit)."""
    out, zs = be.asarray(x), []
    for layer in model.layers:
        out = layer.forward(out)
        if isinstance(layer, ap.Dense):
            zs.append(be.to_host(out))
    return zs


@_settings(60)
@given(problem=problems())
def test_random_architectures_pass_gradcheck(backend_name, problem):
    if backend_name not in ("numpy", "array_api_strict"):
        pytest.skip("the gradient property runs on numpy and array_api_strict")
    sizes, act, loss_name, x, y, seed = problem
    be = ap.get_backend(backend_name, dtype="float64")
    # BCE on probabilities needs outputs in (0, 1): a sigmoid output layer.
    out_act = "sigmoid" if loss_name == "bce" else None
    model = ap.mlp(sizes, activation=act, output_activation=out_act, seed=seed, backend=be)
    if act in KINKED:
        # Central differences straddling a kink (z = 0) are not derivatives: keep every unit
        # at least 1e-3 away from it (a step of 1e-6 moves z by far less).
        zs = _pre_activations(model, be, x)
        assume(all(np.all(np.abs(z) > 1e-3) for z in zs[:-1]))
    loss = None if loss_name == "none" else LOSSES[loss_name]()
    if loss_name == "bce":
        # Away from the [eps, 1 − eps] clip, where BCE's gradient is cut off.
        p = be.to_host(model.forward(be.asarray(x)))
        assume(np.all((p > 1e-6) & (p < 1 - 1e-6)))
    RUNS["gradcheck"] += 1
    errors = ap.gradcheck(model, x, y, loss=loss)
    assert set(errors) >= {p.name for p in model.parameters()} | {"input"}
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, (worst, errors[worst], sizes, act, loss_name)
