"""``arrayprop bench --precision bf16``: bfloat16 mixed precision beside float32, on the torch
backend, against PyTorch autocast on the same device, and its accuracy cost on digits.

Four workloads are timed per config, interleaved (:func:`~arrayprop.bench.timing.time_workloads`):

  arrayprop         ``train_step`` in float32 on the torch backend (as the main bench);
  arrayprop-bf16    :class:`~arrayprop.MixedPrecision` ``(..., "bfloat16")``: float32 masters,
                    forward and backward in bfloat16, SGD on the masters;
  torch-eager       the float32 PyTorch peer of the main bench;
  torch-autocast    the same peer inside ``torch.autocast(device, dtype=torch.bfloat16)``.

The accuracy cost (:func:`digits_accuracy`): the bundled digits, MLP 64-128-10, SGD with
momentum, the same seeds for float32 and bfloat16; test accuracy of each. See
docs/precision.md.
"""

from __future__ import annotations

import datetime as _dt
import os
import statistics
from collections.abc import Callable, Sequence

import numpy as np

import arrayprop as ap
from arrayprop.bench.configs import LR, get_configs, make_data
from arrayprop.bench.environment import env_lines, environment
from arrayprop.bench.report import format_table, markdown_table
from arrayprop.bench.timing import time_workloads
from arrayprop.bench.workloads import Workload, arrayprop_backend, make_workload
from arrayprop.data import load_digits

SCHEMA = "arrayprop-bench-precision/1"
#: The timed implementations, in the order they run (grouped by thread pool).
IMPLS = ("arrayprop", "arrayprop-bf16", "torch-eager", "torch-autocast")
#: Seeds of the accuracy comparison.
SEEDS = (0, 1, 2)


def _mixed_workload(cfg, batch, device, seed) -> Workload:
    be = arrayprop_backend("torch", device)
    x_h, y_h = make_data(cfg, batch, seed)
    model = ap.mlp(list(cfg.sizes), activation=cfg.activation, seed=seed, backend=be)
    loss = ap.SoftmaxCrossEntropy() if cfg.loss == "softmax-ce" else ap.MSE()
    mp = ap.MixedPrecision(model, loss, ap.SGD(model.parameters(), lr=LR), "bfloat16")
    x, y = be.asarray(x_h), be.asarray(y_h)
    return Workload(
        "arrayprop-bf16",
        cfg,
        "torch",
        str(be.device),
        batch,
        lambda: mp.step(x, y),
        lambda out: be.sync(out),
        info={"compute_dtype": mp.low_backend.dtype_name},
    )


def _autocast_workload(cfg, batch, device, seed) -> Workload:
    import torch

    eager = make_workload("torch-eager", cfg, "torch", device, batch, seed)
    dev = torch.device(eager.device)
    inner = eager.step

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            return inner()

    return Workload(
        "torch-autocast",
        cfg,
        "torch",
        eager.device,
        batch,
        step,
        eager.sync,
        info={**eager.info, "autocast": "bfloat16"},
    )


def precision_workloads(cfg, device=None, batch=None, seed=0) -> list[Workload]:
    """The four workloads of :data:`IMPLS` for ``cfg`` (a :class:`BenchConfig` or its name)."""
    cfg = get_configs([cfg])[0] if isinstance(cfg, str) else cfg
    batch = cfg.batch if batch is None else int(batch)
    return [
        make_workload("arrayprop", cfg, "torch", device, batch, seed),
        _mixed_workload(cfg, batch, device, seed),
        make_workload("torch-eager", cfg, "torch", device, batch, seed),
        _autocast_workload(cfg, batch, device, seed),
    ]


def digits_accuracy(
    seeds: Sequence[int] = SEEDS, epochs: int = 30, device: str | None = None
) -> list[dict]:
    """Test accuracy on digits after the same training in float32 and in bfloat16 mixed precision.

    Per seed (split, initial weights and batch order): an MLP 64-128-10 on the torch backend,
    SGD (lr 0.05, momentum 0.9), batches of 64, ``epochs`` epochs. Returns one dict per seed:
    ``{"seed", "float32", "bfloat16", "max_weight_diff"}``: the test accuracies (the bfloat16
    model evaluated in bfloat16, as it would be served) and the largest difference between the
    two runs' final float32 weights (how far bfloat16 moved the training).
    """
    be = arrayprop_backend("torch", device)
    rows = []
    for seed in seeds:
        (x_tr, y_tr), (x_te, y_te) = load_digits(seed=seed)
        row: dict = {"seed": int(seed)}
        trained = {}
        for precision in ("float32", "bfloat16"):
            model = ap.mlp([64, 128, 10], seed=seed, backend=be)
            loss = ap.SoftmaxCrossEntropy()
            opt = ap.SGD(model.parameters(), lr=0.05, momentum=0.9)
            mp = ap.MixedPrecision(model, loss, opt, "bfloat16") if precision != "float32" else None
            rng = np.random.default_rng(seed)
            x, y = be.asarray(x_tr), be.asarray(y_tr)
            for _ in range(epochs):
                order = rng.permutation(len(y_tr))
                for i in range(0, len(order), 64):
                    idx = be.asarray(order[i : i + 64])
                    xb, yb = be.xp.take(x, idx, axis=0), be.xp.take(y, idx, axis=0)
                    if mp is None:
                        ap.train_step(model, loss, opt, xb, yb)
                    else:
                        mp.step(xb, yb)
            trained[precision] = [be.to_host(p.data) for p in model.parameters()]
            net = model if mp is None else model.to(be.with_dtype("bfloat16"))
            logits = be.to_host(net.forward(net.backend.asarray(x_te)))
            row[precision] = float(np.mean(np.argmax(logits, axis=1) == y_te))
        row["max_weight_diff"] = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(trained["float32"], trained["bfloat16"], strict=True)
        )
        rows.append(row)
    return rows


def run_precision(
    configs: Sequence[str] | str | None = ("large", "wide"),
    *,
    device: str | None = None,
    repeat: int = 20,
    warmup: int = 3,
    max_time: float | None = 5.0,
    seeds: Sequence[int] = SEEDS,
    seed: int = 0,
    batch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Time :data:`IMPLS` per config and measure the digits accuracy; the result document.

    ``batch`` overrides the configs' batch size (where the full one takes too long: PyTorch's
    fallback bfloat16 GEMM on a CPU without bfloat16 units); ``seeds=()`` skips the accuracy.
    """
    log = log or (lambda s: None)
    cfgs = get_configs(configs)
    load_start = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    results = []
    for cfg in cfgs:
        b = batch or cfg.batch
        log(f"timing {cfg.name} ({cfg.describe()}, batch {b}): {', '.join(IMPLS)}")
        wls = precision_workloads(cfg, device, batch=batch, seed=seed)
        ms = time_workloads(wls, warmup=warmup, repeat=repeat, max_time=max_time)
        results += [m.to_dict() for m in ms]
        del wls
    log(f"digits accuracy, float32 vs bfloat16, seeds {list(seeds)}")
    accuracy = digits_accuracy(seeds, device=device) if seeds else []
    from arrayprop.backends.torch.kernels import bf16_gemm_path

    env = environment(("torch",))
    env["load_start"] = load_start
    env["bf16_gemm_path"] = bf16_gemm_path()
    return {
        "schema": SCHEMA,
        "started": started,
        "env": env,
        "timing": {"warmup": warmup, "repeat": repeat, "max_time": max_time, "lr": LR},
        "results": results,
        "summary": summarize(results),
        "accuracy": accuracy,
    }


def summarize(results: Sequence[dict]) -> list[dict]:
    """Per config: ms/step of each implementation and the ratios ``t_autocast / t_ap_bf16``
    (> 1: arrayprop's bfloat16 is faster) and ``t_ap_f32 / t_ap_bf16`` (> 1: bf16 pays off)."""
    by = {(r["config"], r["impl"]): r["ms_per_step"] for r in results}
    batches = {r["config"]: r.get("batch") for r in results}
    out = []
    for name in dict.fromkeys(r["config"] for r in results):
        ms = {impl: by.get((name, impl)) for impl in IMPLS}
        bf16 = ms["arrayprop-bf16"]
        out.append(
            {
                "config": name,
                "batch": batches[name],
                "ms": ms,
                "autocast_over_bf16": _ratio(ms["torch-autocast"], bf16),
                "f32_over_bf16": _ratio(ms["arrayprop"], bf16),
                "eager_f32_over_autocast": _ratio(ms["torch-eager"], ms["torch-autocast"]),
            }
        )
    return out


def _ratio(a, b):
    return a / b if a and b else None


def _rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "config",
        "batch",
        "arrayprop f32 ms",
        "arrayprop bf16 ms",
        "eager f32 ms",
        "autocast bf16 ms",
        "autocast / arrayprop bf16",
        "arrayprop f32 / bf16",
    ]
    rows = []
    for s in doc["summary"]:
        ms = s["ms"]
        rows.append(
            [
                s["config"],
                str(s.get("batch")),
                *(f"{ms[i]:.1f}" if ms[i] else "n/a" for i in IMPLS),
                *(
                    f"{v:.2f}x" if v else "n/a"
                    for v in (s["autocast_over_bf16"], s["f32_over_bf16"])
                ),
            ]
        )
    return header, rows


def _accuracy_lines(doc: dict) -> list[str]:
    acc = doc["accuracy"]
    if not acc:
        return ["digits accuracy: not measured in this run"]
    f32 = [a["float32"] for a in acc]
    bf16 = [a["bfloat16"] for a in acc]
    per_seed = ", ".join(f"seed {a['seed']}: {a['float32']:.4f} / {a['bfloat16']:.4f}" for a in acc)
    return [
        "digits test accuracy, float32 / bfloat16 (MLP 64-128-10, SGD momentum, 30 epochs): "
        + per_seed,
        f"mean {statistics.mean(f32):.4f} / {statistics.mean(bf16):.4f} "
        f"(difference {statistics.mean(bf16) - statistics.mean(f32):+.4f}); largest difference "
        f"between the final float32 and bfloat16-trained weights "
        f"{max(a['max_weight_diff'] for a in acc):.3g}",
    ]


def format_precision_report(doc: dict) -> str:
    """The plain-text report ``arrayprop bench --precision bf16`` prints."""
    env = doc["env"]
    header, rows = _rows(doc)
    device = doc["results"][0]["device"] if doc["results"] else "?"
    lines = [
        f"bfloat16 mixed precision on torch@{device}"
        f" (bf16 GEMM path: {env.get('bf16_gemm_path')}); load average at the start "
        f"{env.get('load_start')}, at the end {env.get('loadavg')}",
        format_table(header, rows),
        *_accuracy_lines(doc),
    ]
    return "\n".join(lines)


def precision_markdown(doc: dict) -> str:
    """The Markdown report of ``--precision bf16 --markdown PATH``."""
    env = doc["env"]
    header, rows = _rows(doc)
    return "\n".join(
        [
            "## arrayprop bfloat16 mixed precision vs PyTorch autocast",
            "",
            *env_lines(env),
            f"- bfloat16 GEMM path of the torch backend: {env.get('bf16_gemm_path')}",
            f"- started {doc['started']} at load average {env.get('load_start')}; timing "
            f"{doc['timing']}; medians of interleaved samples",
            "",
            "Ratios: `autocast / arrayprop bf16` = t_autocast / t_arrayprop_bf16 (> 1.00x: "
            "arrayprop is faster); `arrayprop f32 / bf16` = t_f32 / t_bf16 (> 1.00x: bf16 "
            "pays off).",
            "",
            markdown_table(header, rows, n_left=2),
            "",
            *(f"- {line}" for line in _accuracy_lines(doc)),
            "",
        ]
    )
