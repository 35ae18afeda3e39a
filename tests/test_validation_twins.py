"""The host/device twins of arrayprop.validation agree with each other and with plain NumPy math.

On random arrays of every real dtype, for every backend: the device twin's 0-d bool is True
exactly when the host twin passes, and both match a reference written out here. When it is
None the device twin had nothing to look for, and the host twin passes too.
"""

from __future__ import annotations

import numpy as np
import pytest

from arrayprop.errors import LabelError, NonFiniteError
from arrayprop.validation import (
    check_class_labels,
    check_finite,
    class_labels_ok,
    finite_ok,
)

F32 = float(np.finfo(np.float32).max)
F16 = float(np.finfo(np.float16).max)
CASTS = [None, ("float32", F32), ("float16", F16)]

#: Per dtype, magnitudes the random values are drawn around: small ones, ones beyond float16,
#: beyond float32 (where the dtype holds them) and the dtype's extremes.
SCALES = {
    "float64": [1.0, 7e4, 1e39, 1.7e308],
    "float32": [1.0, 7e4, 3.4e38],
    "float16": [1.0, 6e4],
    "int64": [1, 70000, 2**62],
    "int32": [1, 65504, 65505, 2**31 - 1],
    "int16": [1, 2**15 - 1],
    "uint8": [1, 255],
}


def _random(rng: np.random.Generator, dtype: str) -> np.ndarray:
    """A (rows, cols) array of ``dtype``: mostly small values, a few large, NaN/±inf sometimes."""
    shape = (int(rng.integers(1, 7)), int(rng.integers(1, 4)))
    scales = SCALES[dtype]
    scale = np.asarray(scales, dtype=np.float64)[rng.integers(0, len(scales), shape)]
    small = rng.random(shape) < 0.6
    if np.dtype(dtype).kind == "f":
        values = np.where(small, rng.standard_normal(shape), scale * rng.uniform(0.5, 1.0, shape))
        values *= rng.choice([-1.0, 1.0], shape)
        values = np.clip(values, -float(np.finfo(dtype).max), float(np.finfo(dtype).max))
        special = rng.random(shape)
        values[special < 0.05] = np.nan
        values[(special >= 0.05) & (special < 0.1)] = np.inf
        values[(special >= 0.1) & (special < 0.15)] = -np.inf
        return values.astype(dtype)
    info = np.iinfo(dtype)
    ints = np.where(small, rng.integers(-3, 4, shape), scale.astype(np.int64))
    if info.min < 0:
        ints *= rng.choice([-1, 1], shape)
    return np.clip(ints, info.min, info.max).astype(dtype)


def _reference(a: np.ndarray, cast_to, nonfinite_ok: bool) -> bool:
    v = a.astype(np.float64)
    finite = np.isfinite(v)
    if not nonfinite_ok and not finite.all():
        return False
    return cast_to is None or bool(np.all(np.abs(v[finite]) <= cast_to[1]))


def _host_passes(check, *args, **kwargs) -> bool:
    try:
        check(*args, **kwargs)
    except (NonFiniteError, LabelError):
        return False
    return True


def _device(backend, a: np.ndarray):
    dtype = getattr(backend.xp, a.dtype.name, None)
    if dtype is None:
        pytest.skip(f"{backend.name} has no {a.dtype.name}")
    return backend.asarray(a, dtype=dtype)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", list(SCALES))
def test_finite_twins_agree(backend, dtype, seed):
    rng = np.random.default_rng([seed, len(dtype)])
    xp = backend.xp
    for _ in range(8):
        a = _random(rng, dtype)
        dev = _device(backend, a)
        for cast_to in CASTS:
            for nonfinite_ok in (False, True):
                want = _reference(a, cast_to, nonfinite_ok)
                host = _host_passes(
                    check_finite, a, "x", cast_to=cast_to, nonfinite_ok=nonfinite_ok
                )
                flag = finite_ok(xp, dev, cast_to, nonfinite_ok=nonfinite_ok)
                device = True if flag is None else bool(backend.to_host(flag))
                case = f"{a!r} cast_to={cast_to} nonfinite_ok={nonfinite_ok}"
                assert host == want, case
                assert device == want, case
                if flag is not None:
                    assert tuple(flag.shape) == (), case


def test_finite_twin_has_nothing_to_check_on_data_that_fits(backend):
    xp = backend.xp
    f32 = backend.asarray(np.ones((3, 2), np.float32), dtype=xp.float32)
    assert finite_ok(xp, f32, ("float32", F32), nonfinite_ok=True) is None  # no pass at all
    assert finite_ok(xp, backend.asarray(np.ones((3, 2), np.int16)), ("float32", F32)) is None
    assert finite_ok(xp, backend.asarray(np.ones(3, bool)), None) is None


def test_host_twin_names_the_first_bad_element():
    a = np.zeros((4, 3))
    a[2, 1] = 1e39
    a[3, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"^x contains 1e\+39 at index \(2, 1\), whose"):
        check_finite(a, "x", cast_to=("float32", F32))
    with pytest.raises(NonFiniteError, match=r"^x contains nan at index \(3, 0\); NaN and inf"):
        check_finite(a, "x")
    check_finite(a, "x", nonfinite_ok=True)  # no cast, NaN let through: nothing to find


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint8"])
def test_label_twins_agree(backend, dtype, seed):
    rng = np.random.default_rng([seed, len(dtype)])
    info = np.iinfo(dtype)
    xp = backend.xp
    for _ in range(10):
        k = int(rng.choice([1, 2, 10, 300]))  # 300: beyond int8 and uint8
        n = int(rng.integers(0, 9))
        low = max(-2, int(info.min))
        labels = rng.integers(low, min(k + 2, int(info.max) + 1), n).astype(dtype)
        want = bool(np.all((labels >= 0) & (labels < k)))
        host = _host_passes(check_class_labels, labels, k, "y")
        device = bool(backend.to_host(class_labels_ok(xp, _device(backend, labels), k, "y")))
        assert host == want == device, f"{labels!r} k={k}"


def test_label_twins_name_the_same_dtype_error_and_the_host_one_the_culprit(backend):
    floats = np.array([0.0, 1.0, 2.0])
    with pytest.raises(LabelError) as host:
        check_class_labels(floats, 3, "y")
    with pytest.raises(LabelError) as device:
        class_labels_ok(backend.xp, backend.asarray(floats), 3, "y")
    assert str(host.value).startswith("y: class labels of shape (3,) must be integers 0..2, got")
    assert str(device.value).startswith("y: class labels of shape (3,) must be integers 0..2, got")
    with pytest.raises(
        LabelError,
        match=r"^y: label 5 at index 2 is out of range for a model with 3 outputs \(valid: 0..2\)$",
    ):
        check_class_labels(np.array([0, 2, 5, 1, 5]), 3, "y")
