"""NumPy's BLAS threads: the rule fit uses (choose_blas_threads), the scoped limit, and fit
applying it on the backends that compute with NumPy's BLAS, restoring the pools afterwards."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import arrayprop as ap
from arrayprop.backends import threads
from arrayprop.backends.threads import SMALL_GEMM, choose_blas_threads
from arrayprop.training.args import largest_gemm

ALL_ENV = (threads.BLAS_ENV, *threads.THREAD_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def blas_threads_now() -> list[int]:
    return [p["num_threads"] for p in threads.blas_pools()]


def test_numpy_blas_pool_is_found():
    pools = threads.blas_pools()
    assert pools and all(p["num_threads"] >= 1 for p in pools)


@pytest.mark.parametrize(
    ("gemm", "expected"),
    [(1, 1), (SMALL_GEMM - 1, 1), (SMALL_GEMM, None), (10 * SMALL_GEMM, None), (None, None)],
)
def test_auto_limits_small_products_only(clean_env, gemm, expected):
    assert choose_blas_threads("auto", gemm) == expected


@pytest.mark.parametrize("requested", [1, 3, None])
def test_an_explicit_request_wins_over_rule_and_environment(clean_env, requested):
    clean_env.setenv(threads.BLAS_ENV, "7")
    clean_env.setenv("OPENBLAS_NUM_THREADS", "2")
    for gemm in (1, 10 * SMALL_GEMM, None):
        assert choose_blas_threads(requested, gemm) == requested


@pytest.mark.parametrize(
    ("value", "small", "large"),
    [("1", 1, 1), ("4", 4, 4), ("off", None, None), ("OFF", None, None), ("auto", 1, None)],
)
def test_environment_overrides_auto(clean_env, value, small, large):
    clean_env.setenv(threads.BLAS_ENV, value)
    assert choose_blas_threads("auto", 1000) == small
    assert choose_blas_threads("auto", 10 * SMALL_GEMM) == large


@pytest.mark.parametrize("name", threads.THREAD_ENV)
def test_auto_leaves_a_thread_count_the_user_chose(clean_env, name):
    clean_env.setenv(name, "2")
    assert choose_blas_threads("auto", 1000) is None


@pytest.mark.parametrize("bad", [0, -1, 1.0, "1", "two", True, [1]])
def test_bad_requests_are_refused(clean_env, bad):
    with pytest.raises(ValueError, match=r"^fit: blas_threads must be 'auto', None or an int >= 1"):
        choose_blas_threads(bad, 1000)


@pytest.mark.parametrize("bad", ["0", "-2", "1.5", "many"])
def test_bad_environment_values_are_refused(clean_env, bad):
    clean_env.setenv(threads.BLAS_ENV, bad)
    with pytest.raises(ValueError, match=rf"^{threads.BLAS_ENV} must be .*got '{bad}'"):
        choose_blas_threads("auto", 1000)


def test_limit_applies_inside_and_restores_after():
    with threadpool_limits(2, user_api="blas"):
        with threads.limit_blas_threads(1):
            assert set(blas_threads_now()) == {1}
        assert set(blas_threads_now()) == {2}
        with threads.limit_blas_threads(None):
            assert set(blas_threads_now()) == {2}


def test_largest_gemm_of_dense_and_conv_models(backend):
    model = ap.mlp([64, 256, 10], seed=0, backend=backend)
    assert largest_gemm(model, 32) == 32 * 64 * 256
    assert largest_gemm(ap.mlp([5, 3, 700], seed=0, backend=backend), 2) == 2 * 3 * 700
    conv = ap.Sequential(
        ap.Conv2D(1, 4, 3, seed=0, backend=backend),
        ap.ReLU(),
        ap.MaxPool2D(2),
        ap.Conv2D(4, 8, 3, padding=1, seed=0, backend=backend),
        ap.Flatten(),
        ap.Dense(8 * 3 * 3, 10, seed=0, backend=backend),
    )
    # Without the image size a convolution's product is unknown.
    assert largest_gemm(conv, 32) is None
    # 8x8 input: conv1 32·6·6 x 1·3·3 x 4, conv2 32·3·3 x 4·3·3 x 8, Dense 32 x 72 x 10.
    assert largest_gemm(conv, 32, (1, 8, 8)) == 32 * 9 * 36 * 8
    # 20x20: conv1 4·18·18 x 9 x 4, conv2 4·9·9 x 36 x 8 (the largest), Dense 4 x 648 x 2.
    big = ap.Sequential(
        ap.Conv2D(1, 4, 3, seed=0, backend=backend),
        ap.ReLU(),
        ap.MaxPool2D(2),
        ap.Conv2D(4, 8, 3, padding=1, seed=0, backend=backend),
        ap.Flatten(),
        ap.Dense(8 * 9 * 9, 2, seed=0, backend=backend),
    )
    assert largest_gemm(big, 4, (1, 20, 20)) == 4 * 81 * 36 * 8
    # A convolution inside a nested model: not counted, so unknown.
    nested = ap.Sequential(ap.Sequential(conv.layers[0]), ap.Flatten())
    assert largest_gemm(nested, 32, (1, 8, 8)) is None
    # Data the model cannot take: unknown (fit reports the shape itself).
    assert largest_gemm(conv, 32, (3, 8, 8)) is None


def _fit_and_watch(model, x, y, **kwargs):
    """Fit for two epochs and return (history, the BLAS thread counts seen in each epoch)."""
    seen = []
    watch = ap.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(blas_threads_now()))
    history = ap.fit(
        model, x, y, loss="softmax-ce", optimizer="sgd", epochs=2, batch_size=8,
        progress=None, callbacks=[watch], **kwargs,
    )  # fmt: skip
    return history, seen


def _data(n_in, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((16, n_in)).astype(np.float32), rng.integers(0, 10, 16)


def test_fit_limits_small_models_and_restores(backend, clean_env):
    x, y = _data(64)
    with threadpool_limits(2, user_api="blas"):
        history, seen = _fit_and_watch(ap.mlp([64, 32, 10], seed=0, backend=backend), x, y)
        after = blas_threads_now()
    if backend.uses_numpy_blas:
        assert history.blas_threads == 1
        assert all(set(s) == {1} for s in seen), seen
    else:  # its own pools: NumPy's are not touched
        assert history.blas_threads is None
        assert all(set(s) == {2} for s in seen), seen
    assert set(after) == {2}


def test_fit_limits_small_conv_models_and_leaves_large_ones(backend, clean_env):
    """A CNN's convolution products count (the rule used to leave every model with
    convolution kernels alone): one BLAS thread below SMALL_GEMM, the pools as they are
    above."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)

    def cnn(channels):  # batch 8: the convolution's GEMM is 8·8·8 x 9 x channels
        return ap.Sequential(
            ap.Conv2D(1, channels, 3, padding=1, seed=0, backend=backend),
            ap.ReLU(),
            ap.MaxPool2D(2),
            ap.Flatten(),
            ap.Dense(channels * 4 * 4, 10, seed=0, backend=backend),
        )

    assert 8 * 64 * 9 * 1024 > SMALL_GEMM > 8 * 64 * 9 * 4
    with threadpool_limits(2, user_api="blas"):
        small, seen_small = _fit_and_watch(cnn(4), x, y)
        large, seen_large = _fit_and_watch(cnn(1024), x, y)
    expect = 1 if backend.uses_numpy_blas else None
    assert small.blas_threads == expect
    assert all(set(s) == {expect or 2} for s in seen_small), seen_small
    assert large.blas_threads is None
    assert all(set(s) == {2} for s in seen_large), seen_large


def test_fit_leaves_large_models_and_obeys_overrides(backend, clean_env):
    x, y = _data(1024)
    model = ap.mlp([1024, 1024, 10], seed=0, backend=backend)  # 8 x 1024 x 1024 > SMALL_GEMM
    with threadpool_limits(2, user_api="blas"):
        history, seen = _fit_and_watch(model, x, y)
        assert history.blas_threads is None and all(set(s) == {2} for s in seen)
        clean_env.setenv(threads.BLAS_ENV, "1")
        history, seen = _fit_and_watch(model, x, y)
        expect = {1} if backend.uses_numpy_blas else {2}
        assert all(set(s) == expect for s in seen), seen
        history, seen = _fit_and_watch(model, x, y, blas_threads=None)
        assert history.blas_threads is None and all(set(s) == {2} for s in seen)


def test_fit_refuses_a_bad_blas_threads(backend):
    x, y = _data(8)
    with pytest.raises(ValueError, match="fit: blas_threads must be"):
        ap.fit(ap.mlp([8, 10], backend=backend), x, y, loss="softmax-ce", optimizer="sgd",
               epochs=1, progress=None, blas_threads=0)  # fmt: skip


def test_describe_rule_names_the_threshold_and_the_overrides(clean_env):
    text = threads.describe_rule()
    assert f"{SMALL_GEMM:,}" in text and threads.BLAS_ENV in text and "set here" not in text
    clean_env.setenv(threads.BLAS_ENV, "off")
    assert f"set here: {threads.BLAS_ENV}=off" in threads.describe_rule()
