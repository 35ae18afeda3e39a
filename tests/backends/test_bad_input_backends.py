"""Bad input to the backends: unknown names, dtypes and devices, foreign arrays in
``asarray`` / ``to_host``, complex data. Rows of the bad-input table.

The harness (``Case``, ``check``) is tests/badinput.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import arrayprop as ap
import badinput
from arrayprop.errors import (
    BackendMismatchError,
    BackendUnavailableError,
    DTypeError,
)
from badinput import Case, foreign

# -- builders of bad arguments ------------------------------------------------------------


def _lacking(be, dtype):
    """Skip unless ``be``'s library lacks ``dtype``, then ask for it."""
    try:
        ap.get_backend(be.name, device=be.device, dtype=dtype)
    except DTypeError:
        return ap.get_backend(be.name, device=be.device, dtype=dtype)
    pytest.skip(f"{be.name} has {dtype}")


def _unknown_device(be):
    name = {"numpy": "cuda", "array_api_strict": "device9", "torch": "cuda:99"}.get(be.name)
    if name is None:
        pytest.skip(f"no known-missing device for {be.name}")
    return ap.get_backend(be.name, device=name, dtype="float64")


#: Devices no backend here has: other libraries' device kinds, torch's special devices, names
#: no library knows, an index beyond any count, a CPU index, and objects of the wrong type.
BOGUS_DEVICES = ("mps", "meta", "xpu", "gpu", "cuda:99", 3, -1, "cpu:1", "tpu", 3.5, ("cpu",))


def _bogus_device(be, device):
    return ap.get_backend(be.name, device=device, dtype="float64")


def complex_array(be, shape=(5, 3)):
    """An array of ``be``'s own library, on its device, of dtype complex128."""
    return be.xp.asarray(np.ones(shape, dtype=np.complex128), device=be.device)


# -- the rows -----------------------------------------------------------------------------

CASES = [
    # backends and dtypes
    Case(
        "backend-unknown-name",
        lambda be, _: ap.get_backend("tensorflow"),
        ValueError,
        r"unknown backend 'tensorflow'; valid backends: numpy, cupy, torch, jax",
        host_only=True,
    ),
    Case(
        "backend-integer-dtype",
        lambda be, _: ap.get_backend(be.name, dtype="int32"),
        DTypeError,
        r"unsupported model dtype 'int32'; choose one of .*float32",
    ),
    Case(
        "backend-float16-where-lacking",
        lambda be, _: _lacking(be, "float16"),
        DTypeError,
        r"has no dtype 'float16'",
    ),
    Case(
        "backend-bfloat16-where-lacking",
        lambda be, _: _lacking(be, "bfloat16"),
        DTypeError,
        r"has no dtype 'bfloat16'",
    ),
    Case(
        "backend-unknown-device",
        lambda be, _: _unknown_device(be),
        BackendUnavailableError,
        r"device|cuda",
    ),
    *(
        Case(
            f"backend-device-{device!r}",
            lambda be, _, device=device: _bogus_device(be, device),
            BackendUnavailableError,
            rf"no device {re.escape(repr(device))}|not {re.escape(repr(device))}",
        )
        for device in BOGUS_DEVICES
    ),
    Case(
        "backend-name-not-a-string",
        lambda be, _: ap.get_backend(5),
        ValueError,
        r"backend must be a name \(one of numpy, .*\) or a Backend, got 5",
        host_only=True,
    ),
    Case(
        "asarray-complex-device-array",
        lambda be, _: be.asarray(complex_array(be)),
        DTypeError,
        r"cannot use data of dtype .*complex128 \(need (real )?numbers\)",
    ),
    Case(
        "asarray-foreign-library",
        lambda be, _: be.asarray(foreign(be)),
        BackendMismatchError,
        r"got an array of .*convert it explicitly",
    ),
    Case(
        "asarray-complex-data",
        lambda be, _: be.asarray(np.ones((2, 2), dtype=np.complex128)),
        DTypeError,
        r"cannot use data of dtype complex128 \(need numbers\)",
    ),
    Case(
        "to-host-foreign-library",
        lambda be, _: be.to_host(foreign(be)),
        BackendMismatchError,
        r"expected an array of Backend",
    ),
]


@badinput.backend_rows(CASES)
def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
    badinput.check(case, backend, tmp_path)


@badinput.host_rows(CASES)
def test_bad_host_input_raises_a_named_arrayprop_error(case, tmp_path):
    badinput.check(case, None, tmp_path)
