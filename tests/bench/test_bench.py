"""Correctness tests of the benchmark harness (arrayprop.bench). No timing assertions."""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from typing import ClassVar

import numpy as np
import pytest

from arrayprop import bench

ref = bench.load_reference()

SMALL_CE = bench.BenchConfig("t-ce", (6, 5, 4, 3), "relu", "softmax-ce", 7)
SMALL_MSE = bench.BenchConfig("t-mse", (6, 5, 4, 3), "relu", "mse", 7)


def _data64(cfg, batch=None, seed=1):
    x, y = bench.make_data(cfg, batch, seed)
    x = x.astype(np.float64)
    return x, (y.astype(np.float64) if cfg.loss == "mse" else y)


def _loss(params, x, y, loss):
    return float(ref.loss_and_delta(ref.forward(params, x)[-1], y, loss)[0])


# --------------------------------------------------------------------------- NumPy reference


@pytest.mark.parametrize("cfg", [SMALL_CE, SMALL_MSE], ids=lambda c: c.loss)
def test_reference_gradients_match_finite_differences(cfg):
    params = ref.init_params(cfg.sizes, seed=3, dtype=np.float64)
    params = [(w, b + 0.1) for w, b in params]  # non-zero biases exercise ∂b
    x, y = _data64(cfg)
    _, grads = ref.gradients(params, x, y, cfg.loss)
    eps = 1e-6
    for (w, b), (dw, db) in zip(params, grads, strict=True):
        for p, g in ((w, dw), (b, db)):
            num = np.zeros_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + eps
                up = _loss(params, x, y, cfg.loss)
                p[idx] = old - eps
                down = _loss(params, x, y, cfg.loss)
                p[idx] = old
                num[idx] = (up - down) / (2 * eps)
            np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def test_reference_gradients_on_tiny_config_sampled():
    """The real ``tiny`` config in float64: a random sample of coordinates per tensor."""
    cfg = bench.CONFIGS["tiny"]
    params = ref.init_params(cfg.sizes, seed=0, dtype=np.float64)
    x, y = _data64(cfg, batch=16)
    _, grads = ref.gradients(params, x, y, cfg.loss)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for (w, b), (dw, db) in zip(params, grads, strict=True):
        for p, g in ((w, dw), (b, db)):
            for _ in range(12):
                idx = tuple(int(rng.integers(n)) for n in p.shape)
                old = p[idx]
                p[idx] = old + eps
                up = _loss(params, x, y, cfg.loss)
                p[idx] = old - eps
                down = _loss(params, x, y, cfg.loss)
                p[idx] = old
                assert g[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


def test_reference_train_step_is_sgd_on_the_gradients():
    cfg = SMALL_CE
    params = ref.init_params(cfg.sizes, seed=3, dtype=np.float64)
    x, y = _data64(cfg)
    value, grads = ref.gradients(params, x, y, cfg.loss)
    stepped = [(w.copy(), b.copy()) for w, b in params]
    assert ref.train_step(stepped, x, y, lr=0.5, loss=cfg.loss) == pytest.approx(value)
    for (w, b), (dw, db), (w1, b1) in zip(params, grads, stepped, strict=True):
        np.testing.assert_allclose(w1, w - 0.5 * dw, rtol=1e-12)
        np.testing.assert_allclose(b1, b - 0.5 * db, rtol=1e-12)


@pytest.mark.parametrize("name", ["tiny", "wide"])
def test_reference_stays_float32(name):
    cfg = bench.CONFIGS[name]
    small = bench.BenchConfig(name, tuple(min(s, 64) for s in cfg.sizes), "relu", cfg.loss, 8)
    net = ref.NumpyReferenceMLP(ref.init_params(small.sizes), loss=small.loss)
    x, y = bench.make_data(small)
    assert x.dtype == np.float32
    value = net.step(x, y)
    assert value.dtype == np.float32
    for w, b in net.params:
        assert w.dtype == np.float32
        assert b.dtype == np.float32
    assert all(a.dtype == np.float32 for a in ref.forward(net.params, x))


class _MatmulRecorder(np.ndarray):
    """ndarray subclass that records the shapes of every matrix product it takes part in."""

    log: ClassVar[list] = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(i) if isinstance(i, _MatmulRecorder) else i for i in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) for o in kwargs["out"])
        if ufunc is np.matmul and method == "__call__":
            (m, k), (_, n) = plain[0].shape, plain[1].shape
            _MatmulRecorder.log.append((m, k, n))
        result = getattr(ufunc, method)(*plain, **kwargs)
        return result.view(_MatmulRecorder) if isinstance(result, np.ndarray) else result


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_gemm_ceiling_is_the_products_of_a_reference_step(name):
    """The ceiling's products are exactly those the NumPy reference step computes."""
    cfg = bench.CONFIGS[name]
    params = [
        (w.view(_MatmulRecorder), b.view(_MatmulRecorder)) for w, b in ref.init_params(cfg.sizes)
    ]
    x, y = bench.make_data(cfg)
    _MatmulRecorder.log = []
    ref.train_step(params, x.view(_MatmulRecorder), y, loss=cfg.loss)
    expected = sorted((m, k, n) for _, m, k, n in bench.gemm_shapes(cfg.sizes, cfg.batch))
    assert sorted(_MatmulRecorder.log) == expected


class _CountingXP:
    """A stand-in namespace whose matmul only counts FLOPs (2 per multiply-add)."""

    def __init__(self):
        self.flops = 0
        self.calls = []

    def matmul(self, a, b):
        (m, k), (k2, n) = a.shape, b.shape
        assert k == k2
        self.calls.append((m, k, n))
        self.flops += 2 * m * k * n
        return None


def test_gemm_ceiling_flops_tiny_by_hand():
    # 784-128-10, batch 64: layer 0 forward + weight grad; layer 1 forward, weight grad
    # and input grad (the input-data gradient of layer 0 is never needed).
    hand = 2 * 64 * 784 * 128 * 2 + 2 * 64 * 128 * 10 * 3
    assert bench.gemm_flops((784, 128, 10), 64) == hand
    xp = _CountingXP()
    wl = bench.gemm_workload(
        bench.CONFIGS["tiny"], 64, "numpy", None, 0, xp=xp, asarray=lambda a: a
    )
    wl.step()
    assert xp.flops == hand == wl.flops_per_step
    assert len(xp.calls) == 5


@pytest.mark.parametrize("name", list(bench.CONFIGS))
def test_gemm_ceiling_flops_all_configs(name):
    cfg = bench.CONFIGS[name]
    xp = _CountingXP()
    wl = bench.gemm_workload(cfg, cfg.batch, "numpy", None, 0, xp=xp, asarray=lambda a: a)
    wl.step()
    n_layers = len(cfg.sizes) - 1
    assert len(xp.calls) == 3 * n_layers - 1
    # 6·B·Σ(in·out) for a full backward, minus the data layer's input gradient
    full = 6 * cfg.batch * sum(i * o for i, o in pairwise(cfg.sizes))
    assert xp.flops == wl.flops_per_step == full - 2 * cfg.batch * cfg.sizes[0] * cfg.sizes[1]


# --------------------------------------------------------------------------- torch peer


@pytest.mark.parametrize(
    "cfg", [bench.CONFIGS["tiny"], SMALL_CE, SMALL_MSE], ids=["tiny", "small-ce", "small-mse"]
)
def test_torch_peer_matches_reference_after_one_step(cfg):
    torch = pytest.importorskip("torch")
    params = ref.init_params(cfg.sizes, seed=5, dtype=np.float64)
    x, y = _data64(cfg)
    net = ref.NumpyReferenceMLP(params, lr=0.1, loss=cfg.loss)
    ref_before = float(net.step(x, y))
    ref_after = float(net.loss_value(x, y))

    model, step, loss_fn = bench.torch_peer(cfg, params, "cpu", "float64", lr=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    before = step(xt, yt).item()
    with torch.no_grad():
        after = float(loss_fn(model(xt), yt))
    assert before == pytest.approx(ref_before, rel=1e-12)
    assert after == pytest.approx(ref_after, rel=1e-12)
    assert after != pytest.approx(before, rel=1e-9)  # the step did change the weights
    lin = [m for m in model if isinstance(m, torch.nn.Linear)]
    for (w, b), layer in zip(net.params, lin, strict=True):
        np.testing.assert_allclose(layer.weight.detach().numpy().T, w, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(layer.bias.detach().numpy(), b, rtol=1e-11, atol=1e-14)


# --------------------------------------------------------------------------- names, CLI


def test_unknown_config_raises_with_valid_names():
    with pytest.raises(ValueError, match=r"unknown config 'huge'.*tiny, small, medium"):
        bench.get_configs("tiny,huge")


def test_unknown_backend_raises_with_valid_names():
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'.*numpy, cupy, torch"):
        bench.run_benchmarks(["tiny"], "tpu")


def _args(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults():
    args = _args()
    assert args.backends == "numpy"
    assert [c.name for c in bench.get_configs(args.configs)] == list(bench.CONFIGS)
    assert args.repeat == 20
    assert not args.sweep and not args.memory and not args.no_peer
    assert args.json is None and args.markdown is None and args.plot is None


def test_run_from_args_rejects_unknown_config():
    with pytest.raises(ValueError, match="valid configs: tiny, small, medium, large, wide"):
        bench.run_from_args(_args("--configs", "tiny,gigantic"))


def test_sweep_batches():
    assert bench.SWEEP_BATCHES[0] == 1
    assert bench.SWEEP_BATCHES[-1] == 8192
    assert all(b == 2 * a for a, b in pairwise(bench.SWEEP_BATCHES))


def test_python_m_help_describes_the_four_implementations(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m arrayprop.bench" in out
    for impl in bench.IMPLS:
        assert f"\n  {impl} " in out  # one entry per implementation, in its own line


# --------------------------------------------------------------------------- timing loop


def test_time_workloads_syncs_every_sample_and_counts():
    now = [0.0]
    events = []

    def step():
        now[0] += 0.25
        events.append("step")
        return len(events)

    def sync(out):
        events.append("sync")

    wl = bench.Workload("gemm", bench.CONFIGS["tiny"], "numpy", "cpu", 64, step, sync)
    m = bench.time_workload(wl, warmup=2, repeat=5, min_sample_time=1.0, clock=lambda: now[0])
    assert m.steps_per_sample == 4
    assert m.times_s == [0.25] * 5
    assert m.median_s == 0.25
    assert m.iqr_s == 0.0
    assert m.samples_per_s == 64 / 0.25
    # every timed sample is 4 steps followed by exactly one sync
    timed = events[-5 * 5 :]
    assert timed == (["step"] * 4 + ["sync"]) * 5


def test_time_workloads_max_time_limits_repeat():
    now = [0.0]

    def step():
        now[0] += 2.0

    wl = bench.Workload("gemm", bench.CONFIGS["wide"], "numpy", "cpu", 8, step, lambda o: None)
    m = bench.time_workload(
        wl, warmup=0, repeat=20, max_time=5.0, min_repeat=3, clock=lambda: now[0]
    )
    assert len(m.times_s) == 3
    assert m.steps_per_sample == 1


# --------------------------------------------------------------------------- writers


def _fake_doc():
    cfg = bench.CONFIGS["tiny"]
    ms = [
        bench.Measurement(
            "tiny",
            impl,
            backend,
            "cpu",
            64,
            [t, t * 1.1],
            10,
            3,
            flops_per_step=bench.gemm_flops(cfg.sizes, 64) if impl == "gemm" else None,
        )
        for impl, backend, t in [
            ("arrayprop", "numpy", 0.002),
            ("gemm", "numpy", 0.001),
            ("torch-eager", "torch", 0.004),
            ("numpy-ref", "numpy", 0.0021),
        ]
    ]
    return {
        "schema": bench.SCHEMA,
        "env": bench.environment(["numpy"], torch_peer=False),
        "settings": {
            "warmup": 3,
            "repeat": 2,
            "max_time": 5.0,
            "min_sample_time": 0.05,
            "dtype": "float32",
            "lr": 0.01,
        },
        "results": [m.to_dict() for m in ms],
        "summary": bench.summarize(ms),
        "sweep": [],
        "sweep_summary": [],
        "memory": [],
    }


def test_summary_ratios():
    (row,) = _fake_doc()["summary"]
    t = np.median([0.002, 0.0022])
    assert row["gemm_efficiency"] == pytest.approx(np.median([0.001, 0.0011]) / t)
    assert row["vs_torch_eager"] == pytest.approx(np.median([0.004, 0.0044]) / t)
    assert row["vs_numpy_ref"] == pytest.approx(np.median([0.0021, 0.00231]) / t)
    assert row["samples_per_s"] == pytest.approx(64 / t)


def test_json_and_markdown_writers(tmp_path):
    doc = _fake_doc()
    bench.write_json(doc, tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert {"schema", "env", "settings", "results", "summary", "sweep", "memory"} <= set(back)
    assert {r["impl"] for r in back["results"]} == set(bench.IMPLS)
    for r in back["results"]:
        assert {
            "times_s",
            "median_s",
            "iqr_s",
            "ms_per_step",
            "samples_per_s",
            "repeat",
            "steps_per_sample",
            "config",
            "backend",
            "device",
            "batch",
        } <= set(r)
    assert {"cpu_model", "cpu_count", "numpy"} <= set(back["env"])

    bench.write_markdown(doc, tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "| " + " | ".join(bench.SUMMARY_HEADER) + " |" in md
    assert "| tiny | numpy@cpu | 64 |" in md
    for impl in bench.IMPLS:
        assert f"| tiny | {impl} |" in md
    assert "50%" in md  # t_gemm / t_step


def test_plot_writer(tmp_path):
    pytest.importorskip("matplotlib")
    doc = _fake_doc()
    doc["sweep"] = [dict(r, batch=b) for b in (1, 2, 4) for r in doc["results"]]
    bench.write_plot(doc, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- memory


def test_measure_memory_runs_the_child_module(monkeypatch):
    # Warnings as errors in the child: `python -m` warns if the package had already imported
    # the module it is asked to run.
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    r = bench.measure_memory("numpy-ref", "tiny", batch=8)
    assert (r["impl"], r["config"], r["backend"], r["batch"]) == ("numpy-ref", "tiny", "numpy", 8)
    assert isinstance(r["peak_step_bytes"], int) and r["method"]


def test_memory_child_needs_one_spec(capsys):
    from arrayprop.bench import memory_child

    assert memory_child.main([]) == 2
    assert "usage: python -m arrayprop.bench.memory_child" in capsys.readouterr().err


def test_measure_memory_reports_a_failed_child():
    with pytest.raises(RuntimeError, match="memory child for numpy-ref/nope/numpy failed"):
        bench.measure_memory("numpy-ref", "nope")


# --------------------------------------------------------------------------- end to end


def test_run_from_args_tiny_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    jpath, mpath = tmp_path / "tiny.json", tmp_path / "tiny.md"
    args = _args(
        "--configs",
        "tiny",
        "--backends",
        "numpy",
        "--repeat",
        "2",
        "--warmup",
        "1",
        "--json",
        str(jpath),
        "--markdown",
        str(mpath),
    )
    assert bench.run_from_args(args) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "% of GEMM ceiling" in out
    doc = json.loads(jpath.read_text())
    assert {(r["impl"], r["backend"]) for r in doc["results"]} == {
        ("arrayprop", "numpy"),
        ("gemm", "numpy"),
        ("torch-eager", "torch"),
        ("numpy-ref", "numpy"),
    }
    assert all(len(r["times_s"]) == 2 for r in doc["results"])
    (row,) = doc["summary"]
    assert row["vs_torch_eager"] > 0 and row["vs_numpy_ref"] > 0 and row["gemm_efficiency"] > 0
    assert "torch" in doc["env"]
    assert "| tiny | numpy@cpu | 64 |" in mpath.read_text()


def test_interleaving_settles_only_between_thread_pools(monkeypatch):
    now = [0.0]
    sleeps = []
    order = []

    def make(impl, backend):
        def step():
            now[0] += 0.25
            order.append((impl, backend))

        cfg = bench.CONFIGS["tiny"]
        return bench.Workload(impl, cfg, backend, "cpu", 64, step, lambda o: None)

    monkeypatch.setattr(bench.timing.time, "sleep", sleeps.append)
    wls = [make("arrayprop", "numpy"), make("numpy-ref", "numpy"), make("torch-eager", "numpy")]
    assert [w.pool for w in wls] == ["numpy", "numpy", "torch"]
    ms = bench.time_workloads(
        wls,
        warmup=1,
        repeat=6,
        rounds=3,
        min_sample_time=1.0,
        settle_time=2.0,
        clock=lambda: now[0],
    )
    assert [len(m.times_s) for m in ms] == [6, 6, 6]
    assert all(m.steps_per_sample == 4 for m in ms)
    assert all(m.times_s == [0.25] * 6 for m in ms)
    # one switch numpy -> torch while warming up, then two switches (torch -> numpy ->
    # torch) in each of the 3 rounds
    assert sleeps == [2.0] * (1 + 2 * 3)


def test_device_flag_leaves_the_cpu_backends_on_the_host():
    from arrayprop.bench import arrayprop_backend

    assert str(arrayprop_backend("numpy", "cuda").device) == "cpu"
    assert arrayprop_backend("array_api_strict", "cuda").name == "array_api_strict"


# --------------------------------------------------------------------------- device naming


class _CudaDevice:
    """Prints like ``cupy.cuda.Device(0)``."""

    id = 0

    def __str__(self):
        return "<CUDA Device 0>"


class _CupyBackend:
    name = "cupy"
    device = _CudaDevice()


def test_the_cupy_device_is_named_like_the_cuda_peer():
    from arrayprop.bench.workloads import _device_str

    assert _device_str(_CupyBackend()) == "cuda:0"
    # ... which is the device of the PyTorch peer the runner builds for cupy
    assert bench.torch_device_for("cupy", "cuda") == "cuda:0"
    assert bench.torch_device_for("cupy", None) == "cuda:0"
    assert bench.torch_device_for("cupy", "cuda:1") == "cuda:1"
    assert bench.torch_device_for("torch", "cuda") == "cuda:0"
    # --device moves only the device backends: numpy's peer stays on the CPU
    assert bench.torch_device_for("numpy", "cuda") == "cpu"
    assert bench.torch_device_for("torch", None) == "cpu"


def _measurement(impl, backend, device, t):
    return bench.Measurement("tiny", impl, backend, device, 64, [t, t], 10, 2)


def test_a_cuda_row_is_compared_with_the_cuda_peer_only():
    rows = bench.summarize(
        [
            _measurement("arrayprop", "cupy", "cuda:0", 0.001),
            _measurement("arrayprop", "numpy", "cpu", 0.002),
            _measurement("torch-eager", "torch", "cpu", 0.004),
            _measurement("torch-eager", "torch", bench.torch_device_for("cupy", "cuda"), 0.003),
        ]
    )
    by_backend = {r["backend"]: r for r in rows}
    assert by_backend["cupy"]["vs_torch_eager"] == pytest.approx(3.0)
    assert by_backend["numpy"]["vs_torch_eager"] == pytest.approx(2.0)
    # With only a CPU peer, a CUDA row has no peer (it used to take the CPU one).
    (row,) = bench.summarize(
        [
            _measurement("arrayprop", "cupy", "cuda:0", 0.001),
            _measurement("torch-eager", "torch", "cpu", 0.004),
        ]
    )
    assert row["vs_torch_eager"] is None and row["torch_eager_ms_per_step"] is None


def test_memory_of_a_cupy_workload_takes_the_device_memory_path(monkeypatch):
    from arrayprop.bench import memory_child, workloads

    def make_workload(impl, cfg, backend, device, batch, seed):
        dev = workloads._device_str(_CupyBackend())
        return workloads.Workload(
            impl, bench.CONFIGS[cfg], backend, dev, 64, lambda: None, lambda out: None
        )

    monkeypatch.setattr(memory_child, "make_workload", make_workload)
    monkeypatch.setattr(memory_child, "_gpu_memory", lambda wl, result: {**result, "method": "gpu"})
    out = memory_child.measure_step({"impl": "arrayprop", "config": "tiny", "backend": "cupy"})
    assert out["method"] == "gpu" and out["device"] == "cuda:0"
