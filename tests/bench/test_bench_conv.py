"""The convolutional benchmark configs (digits-cnn, lenet): the layer plan, the arrayprop model,
its PyTorch twin, the GEMM ceiling and the runner. No timing assertions."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import bench
from arrayprop.bench.configs import CONV_CONFIGS, ConvBenchConfig
from arrayprop.bench.workloads import build_model, has_reference, torch_twin

#: A small CNN with every layer kind, a stride, a padding and odd sizes, for the exact checks.
SMALL = ConvBenchConfig(
    "t-cnn",
    (2, 9, 7),
    (
        ("conv", 3, 3, 2, 1),
        ("relu",),
        ("conv", 4, 2, 1, 0),
        ("relu",),
        ("maxpool", 2),
        ("flatten",),
        ("dense", 5),
        ("relu",),
        ("dense", 3),
    ),
    "softmax-ce",
    5,
)
CONFIGS = [*CONV_CONFIGS.values(), SMALL]


def _ids(cfg):
    return cfg.name


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_plan_matches_the_arrayprop_model(cfg):
    """n_params, the output shape and the classes agree with the model build_model makes."""
    be = ap.get_backend("numpy", dtype="float64")
    model = build_model(cfg, be, seed=1)
    assert sum(int(np.prod(p.data.shape)) for p in model.parameters()) == cfg.n_params
    x, y = bench.make_data(cfg, 3)
    assert x.shape == (3, *cfg.input_shape) and x.dtype == np.float32
    assert y.min() >= 0 and y.max() < cfg.n_classes
    assert tuple(model.forward(be.asarray(x)).shape) == (3, cfg.n_classes)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_the_model_string_is_the_cli_grammar_of_the_same_network(cfg):
    """describe() writes the layer list in the ``arrayprop train --model`` grammar: the CLI
    builds the same layers with the same parameter count from it."""
    from arrayprop.cli import models

    spec = models.parse_layers(cfg.model())
    built = models.build(spec, cfg.input_shape, cfg.n_classes, backend=ap.get_backend("numpy"))
    ours = build_model(cfg, ap.get_backend("numpy"))
    assert [type(layer).__name__ for layer in built.layers] == [
        type(layer).__name__ for layer in ours.layers
    ]
    assert sum(int(np.prod(p.data.shape)) for p in built.parameters()) == cfg.n_params
    assert cfg.model() in cfg.describe()


def test_bad_layer_lists_are_refused():
    with pytest.raises(ValueError, match=r"t: layer \('dense', 4\) does not fit"):
        ConvBenchConfig("t", (1, 8, 8), (("dense", 4),), "softmax-ce", 2)
    with pytest.raises(ValueError, match="leaves shape"):
        ConvBenchConfig("t", (1, 4, 4), (("conv", 2, 5, 1, 0),), "softmax-ce", 2)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_torch_twin_is_the_same_network_with_the_same_weights(cfg):
    """Float64: the twin's logits, loss and weights after one SGD step equal arrayprop's."""
    torch = pytest.importorskip("torch")
    be = ap.get_backend("numpy", dtype="float64")
    model = build_model(cfg, be, seed=2)
    twin = torch_twin(cfg, model, "cpu", "float64")
    x, y = bench.make_data(cfg, 4, seed=3)
    x = x.astype(np.float64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    np.testing.assert_allclose(
        twin(xt).detach().numpy(), model.forward(be.asarray(x)), rtol=1e-10, atol=1e-12
    )
    loss = ap.SoftmaxCrossEntropy()
    value = float(ap.train_step(model, loss, ap.SGD(model.parameters(), lr=0.1), x, y))
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    tloss = torch.nn.functional.cross_entropy(twin(xt), yt)
    tloss.backward()
    opt.step()
    assert value == pytest.approx(tloss.item(), rel=1e-12)
    weights = [p for p in twin.parameters() if p.dim() > 1]
    ours = [layer for layer in model.layers if hasattr(layer, "weight")]
    assert len(weights) == len(ours) > 0
    for t, layer in zip(weights, ours, strict=True):
        w = t.detach().numpy()
        expect = np.asarray(layer.weight.data)
        np.testing.assert_allclose(w if w.ndim == 4 else w.T, expect, rtol=1e-9, atol=1e-12)


class _RecordingXP:
    """A stand-in namespace whose matmul records shapes and FLOPs."""

    def __init__(self):
        self.calls = []

    def matmul(self, a, b):
        (m, k), (k2, n) = a.shape, b.shape
        assert k == k2
        self.calls.append((m, k, n))


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_gemm_ceiling_is_the_products_of_an_arrayprop_step(cfg, monkeypatch):
    """The ceiling's products are those arrayprop's step computes: recorded from the kernel
    calls of a real train step (portable kernels, every gradient formed, no fold)."""
    calls = []
    for name in ("matmul", "linear"):
        original = getattr(ap.kernels, name)

        def record(be, a, b, *rest, _original=original):
            calls.append((a.shape[0], a.shape[1], b.shape[1]))
            return _original(be, a, b, *rest)

        monkeypatch.setattr(ap.kernels, name, record)
    be = ap.get_backend("numpy", dtype="float32")
    model = build_model(cfg, be)
    x, y = bench.make_data(cfg)
    with ap.kernels.use_portable():
        ap.train_step(
            model,
            ap.SoftmaxCrossEntropy(),
            ap.SGD(model.parameters(), lr=0.01),
            x,
            y,
            keep_grads=True,
        )
    expected = sorted((m, k, n) for _, m, k, n in cfg.gemm_shapes())
    assert sorted(calls) == expected
    xp = _RecordingXP()
    wl = bench.gemm_workload(cfg, cfg.batch, "numpy", None, 0, xp=xp, asarray=lambda a: a)
    wl.step()
    assert sorted(xp.calls) == expected
    assert wl.flops_per_step == sum(2 * m * k * n for m, k, n in expected)


def test_the_cnns_are_named_but_not_in_the_default_set():
    assert [c.name for c in bench.get_configs(None)] == list(bench.CONFIGS)
    assert [c.name for c in bench.get_configs("lenet,digits-cnn")] == ["lenet", "digits-cnn"]
    with pytest.raises(ValueError, match=r"valid configs: tiny, .*, digits-cnn, lenet"):
        bench.get_configs("lenet5")
    assert not has_reference(CONV_CONFIGS["lenet"]) and has_reference(bench.CONFIGS["tiny"])
    with pytest.raises(ValueError, match="numpy-ref is an MLP loop"):
        bench.make_workload("numpy-ref", "lenet")


def test_run_from_args_digits_cnn_end_to_end(tmp_path, capsys):
    """One CNN through the whole command: arrayprop, ceiling and peer, no NumPy loop; memory."""
    pytest.importorskip("torch")
    jpath = tmp_path / "cnn.json"
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = ["--configs", "digits-cnn", "--repeat", "1", "--warmup", "0", "--max-time", "0.01"]
    args = parser.parse_args([*argv, "--memory", "--json", str(jpath)])
    assert bench.run_from_args(args) == 0
    assert "digits-cnn" in capsys.readouterr().out
    doc = json.loads(jpath.read_text())
    assert {(r["impl"], r["backend"]) for r in doc["results"]} == {
        ("arrayprop", "numpy"),
        ("gemm", "numpy"),
        ("torch-eager", "torch"),
    }
    (row,) = doc["summary"]
    assert row["vs_torch_eager"] > 0 and row["gemm_efficiency"] > 0 and row["vs_numpy_ref"] is None
    assert doc["configs"]["digits-cnn"]["input_shape"] == [1, 8, 8]
    assert {m["impl"] for m in doc["memory"]} == {"arrayprop", "torch-eager"}
    assert all(m["peak_step_bytes"] > 0 for m in doc["memory"])
