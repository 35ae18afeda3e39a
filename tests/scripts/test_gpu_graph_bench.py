"""scripts/gpu_graph_bench.py fails (exit 1) when a CUDA-graph capture failed.

The GPU work is replaced by stand-ins: a graph step that did or did not capture, and a PyTorch
step; what is checked is the script's verdict and its tables.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_graph_bench.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_graph_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def _stand_ins(monkeypatch, bench, failing=()):
    def arrayprop_steps(sizes, loss, batch):
        name = next(n for n, c in bench.CONFIGS.items() if c[0] == sizes)
        ok = name not in failing
        graph = SimpleNamespace(captured=ok, reason=None if ok else "capture failed: boom")
        return (lambda: None), (lambda: None), graph, (lambda: None)

    monkeypatch.setattr(bench, "arrayprop_steps", arrayprop_steps)
    monkeypatch.setattr(bench, "torch_step", lambda *a: ((lambda: None), (lambda: None)))


def _run(bench, tmp_path):
    out = tmp_path / "graphs.json", tmp_path / "graphs.md"
    args = ["--configs", "tiny,small", "--steps", "2", "--repeat", "1"]
    status = bench.main([*args, "--json", str(out[0]), "--markdown", str(out[1])])
    return status, json.loads(out[0].read_text()), out[1].read_text()


def test_all_captured_exits_0(monkeypatch, bench, tmp_path):
    _stand_ins(monkeypatch, bench)
    status, records, table = _run(bench, tmp_path)
    assert status == 0
    assert [r["graph_captured"] for r in records] == [True, True]
    assert "capture failed" not in table


def test_a_failed_capture_exits_1_and_still_writes_the_tables(monkeypatch, bench, tmp_path, capsys):
    _stand_ins(monkeypatch, bench, failing={"small"})
    status, records, table = _run(bench, tmp_path)
    assert status == 1
    assert [(r["config"], r["graph_reason"]) for r in records] == [
        ("tiny", None),
        ("small", "capture failed: boom"),
    ]
    assert "capture failed; eager fallback timed" in table
    assert "CUDA-graph capture failed on: small" in capsys.readouterr().err
