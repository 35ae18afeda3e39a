"""The result document as text: console tables, Markdown, JSON and a PNG chart.

The writers take the document that :func:`arrayprop.bench.run_benchmarks` returns (or its JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from arrayprop.bench.configs import SWEEP_CONFIG
from arrayprop.bench.environment import env_lines
from arrayprop.bench.runner import is_noisy
from arrayprop.bench.timing import NOISY_IQR

#: The mark of a noisy figure in the tables (explained by :func:`noise_note`).
NOISY_MARK = " *"


def _fmt(v, spec, suffix=""):
    return "n/a" if v is None else format(v, spec) + suffix


SUMMARY_HEADER = (
    "config",
    "backend",
    "batch",
    "samples/s",
    "ms/step",
    "% of GEMM ceiling",
    "vs PyTorch eager",
    "vs NumPy loop",
)
DETAIL_HEADER = (
    "config",
    "impl",
    "backend@device",
    "batch",
    "ms/step (median)",
    "IQR ms",
    "min ms",
    "samples/s",
    "GFLOP/s",
    "samples x steps",
)


def summary_rows(doc: dict, key: str = "summary") -> list[tuple[str, ...]]:
    return [
        (
            s["config"],
            f"{s['backend']}@{s['device']}",
            str(s["batch"]),
            f"{s['samples_per_s']:,.0f}",
            f"{s['ms_per_step']:.3f}" + _mark(s, "arrayprop"),
            _fmt(s["gemm_efficiency"] and 100 * s["gemm_efficiency"], ".0f", "%")
            + _mark(s, "gemm"),
            _fmt(s["vs_torch_eager"], ".2f", "x") + _mark(s, "torch-eager"),
            _fmt(s["vs_numpy_ref"], ".2f", "x") + _mark(s, "numpy-ref"),
        )
        for s in doc[key]
    ]


def _mark(summary: dict, impl: str) -> str:
    return NOISY_MARK if impl in summary.get("noisy", ()) else ""


def noise_note(doc: dict, keys: Sequence[str] = ("results", "sweep")) -> str | None:
    """The line under the tables when some measurement is noisy (else None)."""
    rows = [r for key in keys for r in doc.get(key) or []]
    noisy = [r for r in rows if is_noisy(r)]
    if not noisy:
        return None
    loads = sorted({r["loadavg"][0] for r in noisy if r.get("loadavg")})
    seen = ""
    if loads:
        span = str(loads[0]) if loads[0] == loads[-1] else f"{loads[0]}-{loads[-1]}"
        seen = f" (1-minute load average {span})"
    return (
        f"{NOISY_MARK.strip()} noisy: {len(noisy)} of {len(rows)} measurements have an "
        f"interquartile range above {NOISY_IQR:.0%} of their median{seen}; "
        "their figures and the ratios built on them are not reliable: rerun on a quieter machine."
    )


def detail_rows(doc: dict, key: str = "results") -> list[tuple[str, ...]]:
    return [
        (
            r["config"],
            r["impl"],
            f"{r['backend']}@{r['device']}",
            str(r["batch"]),
            f"{r['ms_per_step']:.3f}",
            f"{1e3 * r['iqr_s']:.3f}" + (NOISY_MARK if is_noisy(r) else ""),
            f"{1e3 * r['min_s']:.3f}" if "min_s" in r else "n/a",
            f"{r['samples_per_s']:,.0f}",
            _fmt(r["gflops"], ".1f"),
            f"{r['repeat']}x{r['steps_per_sample']}",
        )
        for r in doc[key]
    ]


MEMORY_HEADER = ("config", "impl", "backend@device", "peak step memory (MiB)", "method")


def memory_rows(doc: dict) -> list[tuple[str, ...]]:
    return [
        (
            m["config"],
            m["impl"],
            f"{m['backend']}@{m['device']}",
            f"{m['peak_step_bytes'] / 2**20:.1f}",
            m["method"],
        )
        for m in doc.get("memory", [])
    ]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(
            f"{c:>{w}}" if i >= 2 else f"{c:<{w}}"
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(out)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], n_left: int = 2) -> str:
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < n_left else "---:" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def format_report(doc: dict) -> str:
    parts = [format_table(SUMMARY_HEADER, summary_rows(doc))]
    parts += ["", "all measurements:", format_table(DETAIL_HEADER, detail_rows(doc))]
    note = noise_note(doc)
    if note:
        parts += ["", note]
    if doc.get("sweep_summary"):
        parts += [
            "",
            f"batch sweep ({SWEEP_CONFIG}):",
            format_table(SUMMARY_HEADER, summary_rows(doc, "sweep_summary")),
        ]
    if doc.get("memory"):
        parts += [
            "",
            "peak memory of one train step:",
            format_table(MEMORY_HEADER, memory_rows(doc)),
        ]
    s = doc.get("settings", {})
    parts += ["", *env_lines(doc["env"])]
    parts.append(
        f"- started {s.get('started_utc', '?')} at load average {s.get('loadavg_start')}"
        + (f", ended at {s['loadavg_end']}" if s.get("loadavg_end") else "")
    )
    return "\n".join(parts)


def write_json(doc: dict, path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def to_markdown(doc: dict) -> str:
    s = doc["settings"]
    parts = [
        "## arrayprop train-step benchmark",
        "",
        *env_lines(doc["env"]),
        f"- timing: {s['warmup']} warm-up steps, up to {s['repeat']} samples "
        f"(>= {s['min_sample_time']} s each, at most ~{s['max_time']} s per measurement), "
        f"medians; dtype {s['dtype']}, lr {s['lr']}; started {s.get('started_utc', '?')} "
        f"at load average {s.get('loadavg_start', '?')}"
        + (f", ended at {s['loadavg_end']}" if s.get("loadavg_end") else ""),
        "",
        "Ratios: `% of GEMM ceiling` = t_gemm / t_step; `vs PyTorch eager` = t_torch / t_step; "
        "`vs NumPy loop` = t_numpy_ref / t_step (> 1.00x: arrayprop is faster).",
        "",
        markdown_table(SUMMARY_HEADER, summary_rows(doc)),
        "",
        "### All measurements",
        "",
        markdown_table(DETAIL_HEADER, detail_rows(doc), 3),
    ]
    note = noise_note(doc)
    if note:
        parts += ["", note]
    if doc.get("sweep"):
        parts += [
            "",
            f"### Batch-size sweep ({SWEEP_CONFIG})",
            "",
            markdown_table(SUMMARY_HEADER, summary_rows(doc, "sweep_summary")),
            "",
            markdown_table(DETAIL_HEADER, detail_rows(doc, "sweep"), 3),
        ]
    if doc.get("memory"):
        parts += [
            "",
            "### Peak memory of one train step",
            "",
            markdown_table(MEMORY_HEADER, memory_rows(doc), 3),
        ]
    return "\n".join(parts) + "\n"


def write_markdown(doc: dict, path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(to_markdown(doc))


def _series_label(r: dict) -> str:
    if r["impl"] == "arrayprop":
        return f"arrayprop[{r['backend']}@{r['device']}]"
    if r["impl"] == "gemm":
        return f"GEMM ceiling[{r['backend']}@{r['device']}]"
    if r["impl"] == "torch-eager":
        return f"PyTorch eager[{r['device']}]"
    return "NumPy loop"


def throughput_range(r: dict) -> tuple[float, float]:
    """Samples/s at the slow and the fast quartile of a result row (its IQR as throughput)."""
    med = r["median_s"]
    q1, q3 = r.get("q1_s", med), r.get("q3_s", med)
    return r["samples_per_s"] * med / q3, r["samples_per_s"] * med / q1


def write_plot(doc: dict, path: str | os.PathLike) -> None:
    """Bar chart of samples/s per config and implementation (+ sweep curves if present), with
    the interquartile range as error bars and noisy measurements hatched.

    Raises ``RuntimeError`` with an install hint when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib: pip install 'arrayprop[plot]' (or matplotlib>=3.7)"
        ) from exc
    results, sweep = doc["results"], doc.get("sweep") or []
    ncols = 2 if sweep else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 4.8), squeeze=False)
    ax = axes[0][0]
    configs = list(dict.fromkeys(r["config"] for r in results))
    labels = list(dict.fromkeys(_series_label(r) for r in results))
    width = 0.8 / max(1, len(labels))
    for j, lab in enumerate(labels):
        xs, ys, errs, noisy = [], [], ([], []), []
        for i, c in enumerate(configs):
            r = next((r for r in results if r["config"] == c and _series_label(r) == lab), None)
            if r is not None:
                xs.append(i + (j - (len(labels) - 1) / 2) * width)
                ys.append(r["samples_per_s"])
                low, high = throughput_range(r)
                errs[0].append(r["samples_per_s"] - low)
                errs[1].append(high - r["samples_per_s"])
                noisy.append(is_noisy(r))
        bars = ax.bar(xs, ys, width, label=lab, yerr=errs, capsize=2, ecolor="0.2")
        for bar, flag in zip(bars, noisy, strict=True):
            if flag:
                bar.set_hatch("//")
    ax.set_xticks(range(len(configs)), configs)
    ax.set_yscale("log")
    ax.set_ylabel("samples / s (median; bars: IQR, hatched: noisy)")
    ax.set_title("train step throughput (float32)")
    ax.legend(fontsize=8)
    if sweep:
        ax = axes[0][1]
        for lab in dict.fromkeys(_series_label(r) for r in sweep):
            rows = sorted((r for r in sweep if _series_label(r) == lab), key=lambda r: r["batch"])
            ys = [r["samples_per_s"] for r in rows]
            ranges = [throughput_range(r) for r in rows]
            err = (
                [y - lo for y, (lo, _) in zip(ys, ranges, strict=True)],
                [hi - y for y, (_, hi) in zip(ys, ranges, strict=True)],
            )
            style = "--" if lab.startswith(("GEMM", "PyTorch", "NumPy")) else "-"
            ax.errorbar(
                [r["batch"] for r in rows],
                ys,
                yerr=err,
                fmt=style,
                marker="o",
                ms=3,
                capsize=2,
                label=lab,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples / s (median)")
        ax.set_title(f"batch-size sweep: {SWEEP_CONFIG}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
