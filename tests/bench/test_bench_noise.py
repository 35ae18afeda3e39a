"""What ``arrayprop bench`` says about the trust its figures deserve and where it ran: noisy
measurements flagged in the tables and hatched with error bars in the chart, the load recorded
with each measurement, the BLAS pools read through threadpoolctl, the git revision (or none),
and the NumPy reference loop shipped inside the package. No timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import arrayprop
from arrayprop import bench
from arrayprop.bench import report
from arrayprop.bench.environment import env_lines
from arrayprop.bench.timing import NOISY_IQR

CLEAN = [0.002, 0.0021, 0.00205, 0.00202]  # IQR well under NOISY_IQR of the median
NOISY = [0.002, 0.002, 0.002, 0.009]  # IQR 0.00175 = 87 % of the median


def _measurement(impl, backend, times, load=(3.5, 2.0, 1.0)):
    return bench.Measurement(
        "tiny", impl, backend, "cpu", 64, list(times), 10, 3, loadavg=list(load)
    )


def _doc(arrayprop_times=CLEAN, peer_times=CLEAN):
    ms = [
        _measurement("arrayprop", "numpy", arrayprop_times, (9.5, 4.0, 2.0)),
        _measurement("gemm", "numpy", [t / 2 for t in CLEAN]),
        _measurement("torch-eager", "torch", peer_times, (7.25, 4.0, 2.0)),
        _measurement("numpy-ref", "numpy", CLEAN),
    ]
    return {
        "schema": bench.SCHEMA,
        "env": bench.environment(["numpy"], torch_peer=False),
        "settings": {
            "warmup": 3,
            "repeat": 4,
            "max_time": 5.0,
            "min_sample_time": 0.05,
            "dtype": "float32",
            "lr": 0.01,
            "loadavg_start": [1.0, 1.0, 1.0],
            "loadavg_end": [2.0, 1.0, 1.0],
        },
        "results": [m.to_dict() for m in ms],
        "summary": bench.summarize(ms),
        "sweep": [],
        "sweep_summary": [],
        "memory": [],
    }


def test_noisy_is_an_iqr_above_the_threshold_of_the_median():
    assert not _measurement("gemm", "numpy", CLEAN).noisy
    noisy = _measurement("gemm", "numpy", NOISY)
    assert noisy.noisy and noisy.rel_iqr > NOISY_IQR
    d = noisy.to_dict()
    assert d["noisy"] is True and d["rel_iqr"] == pytest.approx(noisy.iqr_s / noisy.median_s)
    # IQR 0.3 and 0.2 of a median of 1: just above and just below the threshold of 0.25
    assert _measurement("gemm", "numpy", [0.85, 0.85, 1.15, 1.15]).noisy
    assert not _measurement("gemm", "numpy", [0.9, 0.9, 1.1, 1.1]).noisy


def test_summary_names_the_noisy_measurements_of_each_row():
    (row,) = _doc()["summary"]
    assert row["noisy"] == []
    (row,) = _doc(arrayprop_times=NOISY)["summary"]
    assert row["noisy"] == ["arrayprop"]
    (row,) = _doc(peer_times=NOISY)["summary"]
    assert row["noisy"] == ["torch-eager"]


@pytest.mark.parametrize("render", [report.format_report, report.to_markdown])
def test_tables_flag_noisy_figures_and_explain_with_the_load(render):
    clean = render(_doc())
    assert report.NOISY_MARK not in clean and "noisy" not in clean
    text = render(_doc(arrayprop_times=NOISY, peer_times=NOISY))
    note = next(line for line in text.splitlines() if "noisy:" in line)
    assert "2 of 4 measurements" in note and f"{NOISY_IQR:.0%}" in note
    assert "load average 7.25-9.5" in note
    one = render(_doc(arrayprop_times=NOISY))
    assert "(1-minute load average 9.5)" in one
    (summary,) = report.summary_rows(_doc(arrayprop_times=NOISY, peer_times=NOISY))
    flagged = [cell.endswith(report.NOISY_MARK) for cell in summary]
    # ms/step (arrayprop) and vs PyTorch eager carry the mark; the GEMM and NumPy ratios do not
    assert flagged == [False, False, False, False, True, False, True, False]
    detail = report.detail_rows(_doc(arrayprop_times=NOISY))
    assert [r[5].endswith(report.NOISY_MARK) for r in detail] == [True, False, False, False]
    assert "ended at [2.0, 1.0, 1.0]" in text


def test_old_documents_without_the_flag_are_judged_by_their_iqr():
    doc = _doc(arrayprop_times=NOISY)
    for r in doc["results"]:
        del r["noisy"], r["rel_iqr"]
    assert "1 of 4 measurements" in report.format_report(doc)


def test_each_measurement_records_the_load_and_the_json_keeps_it(tmp_path):
    now = [0.0]

    def step():
        now[0] += 0.25

    wl = bench.Workload("gemm", bench.CONFIGS["tiny"], "numpy", "cpu", 64, step, lambda o: None)
    m = bench.time_workload(wl, warmup=0, repeat=3, min_sample_time=0.5, clock=lambda: now[0])
    assert isinstance(m.loadavg, list) and len(m.loadavg) == 3
    doc = _doc()
    doc["results"].append(m.to_dict())
    bench.write_json(doc, tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert all(len(r["loadavg"]) == 3 and "noisy" in r for r in back["results"])


def test_plot_draws_the_iqr_as_error_bars_and_hatches_noisy_bars(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    drawn = []
    original = Axes.bar

    def bar(self, x, height, *args, **kwargs):
        bars = original(self, x, height, *args, **kwargs)
        drawn.append((list(height), kwargs.get("yerr"), bars))
        return bars

    monkeypatch.setattr(Axes, "bar", bar)
    doc = _doc(arrayprop_times=NOISY)
    report.write_plot(doc, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert len(drawn) == len(doc["results"])
    for r, (heights, yerr, bars) in zip(doc["results"], drawn, strict=True):
        low, high = r["batch"] / r["q3_s"], r["batch"] / r["q1_s"]
        assert heights == [r["samples_per_s"]]
        assert yerr[0] == [pytest.approx(r["samples_per_s"] - low)]
        assert yerr[1] == [pytest.approx(high - r["samples_per_s"])]
        assert yerr[0][0] >= 0 and yerr[1][0] >= 0
        assert [b.get_hatch() for b in bars] == (["//"] if r["noisy"] else [None])


def test_environment_reads_the_blas_pools_through_threadpoolctl():
    from threadpoolctl import threadpool_info

    pools = bench.environment(["numpy"], torch_peer=False)["numpy"]["blas"]["threadpools"]
    expect = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert pools and [p["num_threads"] for p in pools] == expect
    line = next(x for x in env_lines(bench.environment(torch_peer=False)) if "NumPy" in x)
    assert f"threads: {pools[0]['num_threads']} ({pools[0]['internal_api']})" in line


def test_no_git_none_outside_a_checkout(monkeypatch):
    env = bench.environment(["numpy"], torch_peer=False)
    env["arrayprop_git"] = None
    text = "\n".join(env_lines(env))
    assert "git None" not in text and "(not a git checkout)" in text
    env["arrayprop_git"] = "abc1234-dirty"
    assert "(git abc1234-dirty)" in "\n".join(env_lines(env))


def test_the_reference_loop_ships_inside_the_package():
    ref = bench.load_reference()
    package = Path(arrayprop.__file__).resolve().parent
    assert ref.__name__ == "arrayprop.bench.reference"
    assert Path(ref.__file__).resolve().is_relative_to(package)
    wl = bench.make_workload("numpy-ref", "tiny", batch=4)
    wl.sync(wl.step())
