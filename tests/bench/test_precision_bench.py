"""``arrayprop bench --precision bf16`` (arrayprop.bench.precision): workloads, ratios, report,
the digits accuracy comparison and the option checks."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from arrayprop import bench
from arrayprop.bench import precision


def _args(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_four_workloads_run_and_the_bf16_ones_compute_in_bf16():
    import torch

    wls = precision.precision_workloads("tiny", batch=8)
    assert [w.impl for w in wls] == list(precision.IMPLS)
    assert {w.device for w in wls} == {"cpu"}
    for w in wls:
        out = w.step()
        w.sync(out)
        assert torch.isfinite(torch.as_tensor(out)).all(), w.impl
    assert wls[1].info == {"compute_dtype": "bfloat16"}
    assert wls[3].info["autocast"] == "bfloat16"


def _doc():
    results = [
        {"config": "large", "impl": impl, "ms_per_step": ms, "device": "cpu", "batch": 512}
        for impl, ms in zip(precision.IMPLS, (100.0, 50.0, 110.0, 200.0), strict=True)
    ]
    return {
        "schema": precision.SCHEMA,
        "started": "t0",
        "env": {"numpy": {"version": "x"}, "bf16_gemm_path": "aten", "load_start": [1, 1, 1]},
        "timing": {},
        "results": results,
        "summary": precision.summarize(results),
        "accuracy": [
            {"seed": 0, "float32": 0.9, "bfloat16": 0.8, "max_weight_diff": 0.01},
            {"seed": 1, "float32": 1.0, "bfloat16": 1.0, "max_weight_diff": 0.02},
        ],
    }


def test_ratios_and_reports():
    doc = _doc()
    (s,) = doc["summary"]
    assert s["autocast_over_bf16"] == pytest.approx(4.0)  # 200 / 50
    assert s["f32_over_bf16"] == pytest.approx(2.0)  # 100 / 50
    assert s["eager_f32_over_autocast"] == pytest.approx(0.55)
    assert s["batch"] == 512
    text = precision.format_precision_report(doc)
    assert "4.00x" in text and "2.00x" in text and "bf16 GEMM path: aten" in text
    assert "mean 0.9500 / 0.9000 (difference -0.0500)" in text
    md = precision.precision_markdown(doc)
    assert "| large | 512 | 100.0 | 50.0 | 110.0 | 200.0 | 4.00x | 2.00x |" in md
    json.dumps(doc)  # the document is plain JSON


def test_a_missing_measurement_gives_no_ratio():
    results = [{"config": "wide", "impl": "arrayprop", "ms_per_step": 3.0}]
    (s,) = precision.summarize(results)
    assert s["autocast_over_bf16"] is None and s["f32_over_bf16"] is None


def test_digits_accuracy_compares_the_same_training_in_both_precisions():
    (row,) = precision.digits_accuracy(seeds=(3,), epochs=1)
    assert row["seed"] == 3
    for key in ("float32", "bfloat16"):
        assert 0.5 < row[key] <= 1.0  # one epoch already learns digits
    # bfloat16 did change the training (a float32 run twice would give 0).
    assert 0 < row["max_weight_diff"] < 0.5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backends", "cupy"], "runs on the torch backend"),
        (["--sweep"], "takes no --sweep"),
        (["--configs", "tiny,huge"], "valid configs"),
        (["--repeat", "0"], "--repeat must be >= 1"),
    ],
)
def test_precision_option_rejects_what_it_cannot_do(argv, message):
    with pytest.raises(ValueError, match=message):
        bench.run_from_args(_args("--precision", "bf16", *argv))


def test_precision_option_defaults_to_large_and_wide(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_run(configs, **kwargs):
        seen["configs"] = configs
        return _doc()

    monkeypatch.setattr(precision, "run_precision", fake_run)
    md = tmp_path / "out" / "p.md"
    assert bench.run_from_args(_args("--precision", "bf16", "--markdown", str(md))) == 0
    assert seen["configs"] == ["large", "wide"]
    assert "autocast / arrayprop bf16" in capsys.readouterr().out
    assert md.read_text().startswith("## arrayprop bfloat16")
    assert _args().precision == "float32"
    np.testing.assert_equal(_args("--precision", "bf16").precision, "bf16")
