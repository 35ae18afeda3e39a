"""fit streams data larger than ``max_device_bytes`` from a memmap in bounded chunks.

The memory fit allocates is measured with tracemalloc, which NumPy reports its array
allocations to; the pages of the memmap itself are file-backed and are not allocations, so the
peak counts exactly what training copies out of the file (chunks, conversions, check
temporaries, the shuffled order), plus the small model and its activations. The full-size
measurement of resident memory (RSS) is benchmarks/memory_streaming.py.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import arrayprop as ap

BUDGET = 1 * 2**20  # 1 MiB
FEATURES = 64


@pytest.fixture(scope="module")
def memmapped(tmp_path_factory):
    """4 MiB of float32 features and int64 labels, on disk, opened read-only."""
    directory = tmp_path_factory.mktemp("stream")
    n = 4 * BUDGET // (FEATURES * 4)  # 16384 rows
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(directory / "x.npy", "w+", np.float32, (n, FEATURES))
    x[:] = rng.standard_normal((n, FEATURES), dtype=np.float32)
    y = np.lib.format.open_memmap(directory / "y.npy", "w+", np.int64, (n,))
    y[:] = rng.integers(0, 10, n)
    x.flush()
    y.flush()
    del x, y
    x = np.load(directory / "x.npy", mmap_mode="r")
    y = np.load(directory / "y.npy", mmap_mode="r")
    assert isinstance(x, np.memmap) and x.nbytes >= 4 * BUDGET
    return x, y


def _fit(x, y, dtype, budget, **kw):
    model = ap.mlp([FEATURES, 16, 10], seed=0, backend="numpy", dtype=dtype)
    history = ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=128,
                     progress=None, seed=0, max_device_bytes=budget, **kw)  # fmt: skip
    return model, history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_peak_memory_of_fit_on_a_memmap_stays_under_the_budget(memmapped, dtype):
    # float64: every chunk is also converted (a second copy) on its way to the device.
    x, y = memmapped
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _fit(x, y, dtype, BUDGET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= BUDGET, f"peak {peak / 2**20:.2f} MiB over a {BUDGET / 2**20:.0f} MiB budget"
    print(f"{dtype}: peak {peak / 2**20:.2f} MiB for {x.nbytes / 2**20:.0f} MiB of data")


def test_streamed_training_equals_training_on_the_data_in_memory(memmapped):
    # Chunks follow the same shuffled order, so the steps are the very same.
    x, y = memmapped
    streamed, h1 = _fit(x, y, "float64", BUDGET)
    resident, h2 = _fit(np.asarray(x), np.asarray(y), "float64", 2**30)
    for a, b in zip(streamed.parameters(), resident.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    assert h1.loss == h2.loss


def test_evaluate_and_predict_stream_too(memmapped):
    x, y = memmapped
    model, _ = _fit(x[:2048], y[:2048], "float32", BUDGET)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        streamed = ap.evaluate(model, x, y, loss="softmax-ce", max_device_bytes=BUDGET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= BUDGET
    whole = ap.evaluate(model, np.asarray(x), np.asarray(y), loss="softmax-ce")
    assert streamed == pytest.approx(whole, rel=1e-6)
    out = ap.predict(model, x, max_device_bytes=BUDGET)
    np.testing.assert_allclose(out, model.predict(np.asarray(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("budget", [BUDGET, 2**30], ids=["streamed", "resident"])
def test_fit_reads_a_read_only_memmap_on_every_backend(backend, memmapped, budget):
    # torch.from_numpy of read-only memory warned (an error under -W error) and aliased it.
    x, y = memmapped
    before = np.array(x[:4])
    model = ap.mlp([FEATURES, 8, 10], seed=0, backend=backend)
    history = ap.fit(model, x[:4096], y[:4096], loss="softmax-ce", optimizer="sgd", epochs=1,
                     batch_size=256, progress=None, max_device_bytes=budget)  # fmt: skip
    assert np.isfinite(history.loss[-1])
    np.testing.assert_array_equal(x[:4], before)
