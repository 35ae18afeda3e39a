"""Host-side data loading, synthetic data sets and small data helpers.

Everything in this module runs on the host with NumPy only; move the arrays to
an Array API backend afterwards. All randomness comes from
:func:`numpy.random.default_rng` seeded by the caller, so every function is
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
Host side of training
    :func:`host_array`, :func:`check_finite`, :func:`check_class_labels`,
    :func:`shuffler`, :func:`rng_state`, :func:`rng_from_state`,
    :func:`gather_rows`: what :func:`arrayprop.fit` does with host data
    before it moves it to the device in large chunks.

The code lives in private modules, one concept each: ``_data_files`` (real data),
``_data_synthetic``, ``_data_helpers`` and ``_data_host``; import from here.
"""

from arrayprop.data.datasets import load_digits, load_idx, load_mnist
from arrayprop.data.host import (
    CHECK_BLOCK_ROWS,
    check_class_labels,
    check_finite,
    gather_rows,
    host_array,
    rng_from_state,
    rng_state,
    shuffler,
)
from arrayprop.data.synthetic import (
    make_linear_regression,
    make_logistic_regression,
    make_spirals,
    make_xor,
)
from arrayprop.data.transforms import (
    ONE_HOT_INFERRED_MAX_BYTES,
    Seed,
    Split,
    batches,
    one_hot,
    standardize,
    train_val_split,
)

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
    "shuffler",
    "standardize",
    "train_val_split",
]
