"""Host-side data loading, synthetic data sets and small data helpers.

Everything in this package runs on the host with NumPy only, but for the
adapter, which hands the data to an Array API backend. All randomness comes from
:func:`arrayprop.random.host_rng` seeded by the caller, so every function is
reproducible given its ``seed``.

Contents
--------
Real data
    :func:`load_digits` (bundled UCI 8x8 digits), :func:`load_mnist` and
    :func:`load_idx` (MNIST / Fashion-MNIST IDX files on disk; never downloads).
Synthetic data
    :func:`make_spirals`, :func:`make_xor`, :func:`make_linear_regression`,
    :func:`make_logistic_regression`.
Helpers
    :func:`standardize`, :func:`one_hot`, :func:`train_val_split`,
    :func:`batches`.
The data boundary of training
    :func:`arrayprop.data.adapter.prepare` checks the data of :func:`arrayprop.fit`,
    :func:`~arrayprop.evaluate` and :func:`~arrayprop.predict` once and places it
    on the device, whole or in chunks (:func:`host_array` and :func:`gather_rows`
    are its host side). Its checks, :func:`check_finite` and
    :func:`check_class_labels`, live in :mod:`arrayprop.validation`; the
    shuffling Generator's saved state, :func:`rng_state` and
    :func:`rng_from_state`, in :mod:`arrayprop.random`. Both are re-exported here.

One concept per module: ``datasets`` (real data), ``synthetic``,
``transforms`` and ``adapter``.
"""

from arrayprop.data.adapter import gather_rows, host_array
from arrayprop.data.datasets import load_digits, load_idx, load_mnist
from arrayprop.data.synthetic import (
    make_linear_regression,
    make_logistic_regression,
    make_spirals,
    make_xor,
)
from arrayprop.data.transforms import (
    ONE_HOT_INFERRED_MAX_BYTES,
    Split,
    batches,
    one_hot,
    standardize,
    train_val_split,
)
from arrayprop.random import Seed, rng_from_state, rng_state
from arrayprop.validation import CHECK_BLOCK_ROWS, check_class_labels, check_finite

__all__ = [
    "CHECK_BLOCK_ROWS",
    "ONE_HOT_INFERRED_MAX_BYTES",
    "Seed",
    "Split",
    "batches",
    "check_class_labels",
    "check_finite",
    "gather_rows",
    "host_array",
    "load_digits",
    "load_idx",
    "load_mnist",
    "make_linear_regression",
    "make_logistic_regression",
    "make_spirals",
    "make_xor",
    "one_hot",
    "rng_from_state",
    "rng_state",
    "standardize",
    "train_val_split",
]
