"""NumPy's BLAS thread pools, read and limited through threadpoolctl (see docs/training.md).

OpenBLAS starts one thread per core for every matrix product above a small size. For the small
products of a small model those threads cost more than they save, and on a busy machine they
wait on each other: :func:`fit <arrayprop.fit>` therefore runs with one BLAS thread when the
model's largest product is below :data:`SMALL_GEMM` multiply-adds (:func:`choose_blas_threads`),
inside :func:`limit_blas_threads`, which restores the pools afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BLAS_ENV",
    "SMALL_GEMM",
    "THREAD_ENV",
    "blas_pools",
    "choose_blas_threads",
    "describe_rule",
    "limit_blas_threads",
]

#: The largest GEMM (batch x in x out multiply-adds) that ``fit`` runs on one BLAS thread by
#: default: 2**22, about 4 million (0.1-0.5 ms on one core). Measured in docs/training.md.
SMALL_GEMM = 2**22

#: The environment variable that overrides the rule: ``auto``, ``off`` or a thread count.
BLAS_ENV = "ARRAYPROP_BLAS_THREADS"

#: Variables by which a user has already chosen the BLAS thread count: ``auto`` leaves it.
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _threadpoolctl() -> Any:
    # Imported when first used: `import arrayprop` imports no library beyond NumPy it need not.
    import threadpoolctl

    return threadpoolctl


def blas_pools() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process and their thread counts (threadpoolctl's
    ``threadpool_info``, restricted to BLAS): ``internal_api``, ``num_threads``, ``version``,
    ``architecture``, ``filepath``."""
    keys = ("internal_api", "num_threads", "version", "architecture", "filepath")
    return [
        {k: pool.get(k) for k in keys}
        for pool in _threadpoolctl().threadpool_info()
        if pool.get("user_api") == "blas"
    ]


def _check_requested(value: Any, whose: str) -> int | str | None:
    if value is None or value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"{whose}: blas_threads must be 'auto', None or an int >= 1, got {value!r}")


def _from_env(text: str) -> int | str | None:
    value = text.strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value == "off":
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"{BLAS_ENV} must be 'auto', 'off' or an int >= 1, got {text!r}")


def choose_blas_threads(
    requested: int | str | None, largest_gemm: int | None, whose: str = "fit"
) -> int | None:
    """The BLAS thread limit for a run whose largest matrix product is ``largest_gemm``
    multiply-adds (None: not known); None means "leave the pools as they are".

    ``requested`` is an int (that many threads), None (no limit) or ``"auto"``, which reads
    :data:`BLAS_ENV` first (``auto``, ``off`` or an int), then leaves the pools alone when one of
    :data:`THREAD_ENV` is set (the user chose), and otherwise limits to 1 thread when
    ``largest_gemm`` is below :data:`SMALL_GEMM`.

    Raises
    ------
    ValueError
        For a ``requested`` or an :data:`BLAS_ENV` value that is none of these.
    """
    requested = _check_requested(requested, whose)
    if requested == "auto" and BLAS_ENV in os.environ:
        requested = _from_env(os.environ[BLAS_ENV])
    if requested != "auto":
        return requested
    if any(os.environ.get(name) for name in THREAD_ENV):
        return None
    if largest_gemm is not None and largest_gemm < SMALL_GEMM:
        return 1
    return None


@contextlib.contextmanager
def limit_blas_threads(threads: int | None) -> Iterator[None]:
    """A context in which NumPy's BLAS uses at most ``threads`` threads (None: unchanged); the
    previous limits come back on exit."""
    if threads is None:
        yield
        return
    with _threadpoolctl().threadpool_limits(limits=threads, user_api="blas"):
        yield


def describe_rule() -> str:
    """The rule ``fit`` applies here, in one line (for ``arrayprop info``)."""
    chosen = [
        f"{name}={os.environ[name]}" for name in (BLAS_ENV, *THREAD_ENV) if name in os.environ
    ]
    setting = f" (set here: {', '.join(chosen)})" if chosen else ""
    return (
        f"fit uses 1 BLAS thread when the model's largest GEMM is < {SMALL_GEMM:,} "
        f"multiply-adds (batch x in x out), unless {BLAS_ENV}=auto|off|N, fit(blas_threads=...) "
        f"or one of {', '.join(THREAD_ENV)} says otherwise{setting}"
    )
