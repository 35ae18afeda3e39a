"""Bad input to the host-side data helpers (one_hot, batches, train_val_split,
standardize, make_spirals, load_idx): the rows of the bad-input table for
``arrayprop.data``. They involve no backend and run once each.

The harness (``Case``, ``check``) is tests/badinput.py.
"""

from __future__ import annotations

import numpy as np

import badinput
from arrayprop.data import batches, load_idx, make_spirals, one_hot, standardize, train_val_split
from arrayprop.errors import (
    DataError,
    LabelError,
    ShapeError,
)
from badinput import Case

# -- builders of bad arguments ------------------------------------------------------------


def _idx(tmp, content: bytes):
    path = tmp / "bad.idx"
    path.write_bytes(content)
    return load_idx(path)


# -- the rows -----------------------------------------------------------------------------

CASES = [
    # data helpers (host-side: run once)
    Case(
        "one-hot-label-too-large",
        lambda be, _: one_hot([0, 3, 1], num_classes=3),
        LabelError,
        r"label 3 at index 1 is out of range \[0, 3\)",
        host_only=True,
    ),
    Case(
        "one-hot-negative-label",
        lambda be, _: one_hot([0, -2], num_classes=3),
        LabelError,
        r"label -2 at index 1 is out of range",
        host_only=True,
    ),
    Case(
        "one-hot-fractional-label",
        lambda be, _: one_hot([0.0, 1.5]),
        LabelError,
        r"label 1.5 at index 1 is not an integer",
        host_only=True,
    ),
    Case(
        "one-hot-nan-label",
        lambda be, _: one_hot([np.nan, 1.0]),
        LabelError,
        r"label nan at index 0 is not an integer",
        host_only=True,
    ),
    Case(
        "one-hot-string-labels",
        lambda be, _: one_hot(["cat", "dog"]),
        LabelError,
        r"labels must be integers, got an array of dtype <U3",
        host_only=True,
    ),
    Case(
        "one-hot-huge-inferred-classes",
        lambda be, _: one_hot(np.array([0, 1, 2**40])),
        LabelError,
        r"largest label, 1099511627776, implies num_classes=1099511627777; .* GiB",
        host_only=True,
    ),
    Case(
        "one-hot-zero-classes",
        lambda be, _: one_hot([0], num_classes=0),
        ValueError,
        r"one_hot: num_classes must be an int >= 1, got 0",
        host_only=True,
    ),
    Case(
        "batches-zero-size",
        lambda be, _: batches(10, 0),
        ValueError,
        r"batches: batch_size must be an int >= 1, got 0",
        host_only=True,
    ),
    Case(
        "batches-negative-size",
        lambda be, _: batches(10, -3),
        ValueError,
        r"batches: batch_size must be an int >= 1, got -3",
        host_only=True,
    ),
    Case(
        "batches-negative-n",
        lambda be, _: batches(-1, 2),
        ValueError,
        r"batches: n must be an int >= 0, got -1",
        host_only=True,
    ),
    Case(
        "split-length-mismatch",
        lambda be, _: train_val_split(np.ones((10, 2)), np.ones(9)),
        ShapeError,
        r"x has 10 samples but y has 9",
        host_only=True,
    ),
    Case(
        "split-fraction-one",
        lambda be, _: train_val_split(np.ones((10, 2)), np.ones(10), val_fraction=1.0),
        ValueError,
        r"train_val_split: val_fraction must be a finite number in \(0, 1\), got 1.0",
        host_only=True,
    ),
    Case(
        "split-one-sample",
        lambda be, _: train_val_split(np.ones((1, 2)), np.ones(1)),
        ValueError,
        r"cannot split 1 sample\(s\)",
        host_only=True,
    ),
    Case(
        "standardize-empty",
        lambda be, _: standardize(np.ones((0, 3))),
        ValueError,
        r"cannot compute mean/std of an empty array",
        host_only=True,
    ),
    Case(
        "spirals-zero-samples",
        lambda be, _: make_spirals(n=0),
        ValueError,
        r"make_spirals: n must be an int >= 1, got 0",
        host_only=True,
    ),
    Case(
        "spirals-negative-noise",
        lambda be, _: make_spirals(noise=-1.0),
        ValueError,
        r"make_spirals: noise must be a finite number >= 0, got -1.0",
        host_only=True,
    ),
    Case(
        "idx-truncated-header",
        lambda be, tmp: _idx(tmp, b"\x00\x00"),
        DataError,
        r"bad.idx: file too short for an IDX header \(2 bytes, need 4\)",
        host_only=True,
    ),
    Case(
        "idx-bad-magic",
        lambda be, tmp: _idx(tmp, b"PK\x03\x04" + bytes(20)),
        DataError,
        r"bad magic number",
        host_only=True,
    ),
    Case(
        "idx-unknown-type",
        lambda be, tmp: _idx(tmp, b"\x00\x00\x42\x01" + bytes(8)),
        DataError,
        r"unknown IDX type code 0x42",
        host_only=True,
    ),
    Case(
        "idx-short-data",
        lambda be, tmp: _idx(tmp, b"\x00\x00\x08\x01\x00\x00\x00\x10" + bytes(3)),
        DataError,
        r"expected 16 bytes of uint8 data for shape \(16,\), found 3",
        host_only=True,
    ),
    Case(
        "idx-corrupt-gzip",
        lambda be, tmp: _idx(tmp, b"\x1f\x8b" + bytes(10)),
        DataError,
        r"corrupt gzip stream",
        host_only=True,
    ),
    Case(
        "idx-missing-file",
        lambda be, tmp: load_idx(tmp / "nope.idx"),
        FileNotFoundError,
        r"IDX file not found",
        host_only=True,
    ),
]


@badinput.host_rows(CASES)
def test_bad_host_input_raises_a_named_arrayprop_error(case, tmp_path):
    badinput.check(case, None, tmp_path)
