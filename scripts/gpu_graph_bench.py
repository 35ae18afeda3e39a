"""Time one training step on a CUDA GPU: arrayprop eager (CuPy), arrayprop with CUDA graphs
(:class:`arrayprop.CudaGraphStep`) and PyTorch eager, for the small configs where
launch overhead dominates.

    PYTHONPATH=src python scripts/gpu_graph_bench.py [--configs tiny,small] [--json P]

Each figure is the median over ``--repeat`` timed runs of ``--steps`` consecutive steps on one
fixed batch, with a device synchronisation before and after each run (so it is the sustained
per-step time, host issue included). Same networks, losses and batch sizes as ``arrayprop
bench`` (float32, SGD lr 0.01).

Exit status 1 when a capture failed on any config (the graph column then timed the eager
fallback: the tables still get written, marked), so that a script stage running this fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time

import numpy as np

CONFIGS = {  # name: (sizes, loss, batch), as arrayprop.bench.CONFIGS
    "tiny": ((784, 128, 10), "softmax-ce", 64),
    "small": ((784, 256, 256, 10), "softmax-ce", 128),
    "medium": ((784, 1024, 1024, 10), "softmax-ce", 256),
}
LR = 0.01


def _time(step, sync, steps: int, repeat: int) -> float:
    """Median seconds per step."""
    for _ in range(max(3, steps // 10)):  # warm-up: compile, allocate, capture
        step()
    sync()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs)


def _data(sizes, loss, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    if loss == "softmax-ce":
        y = rng.integers(0, sizes[-1], size=batch)
    else:
        y = rng.normal(size=(batch, sizes[-1])).astype(np.float32)
    return x, y


def arrayprop_steps(sizes, loss_name, batch):
    """(eager step, graph step, graph object) on CuPy."""
    import arrayprop as ap
    from arrayprop.training.cuda_graph import CudaGraphStep

    be = ap.get_backend("cupy", dtype="float32")
    x_h, y_h = _data(sizes, loss_name, batch)
    x, y = be.asarray(x_h), be.asarray(y_h)

    def build():
        model = ap.mlp(list(sizes), seed=0, backend=be)
        loss = ap.SoftmaxCrossEntropy() if loss_name == "softmax-ce" else ap.MSE()
        return model, loss, ap.SGD(model.parameters(), lr=LR)

    model, loss, opt = build()
    eager = lambda: ap.train_step(model, loss, opt, x, y)  # noqa: E731
    g_model, g_loss, g_opt = build()
    graph = CudaGraphStep(g_model, g_loss, g_opt, x.shape, y.shape, y_dtype=y.dtype)
    return eager, (lambda: graph(x, y)), graph, be.sync


def torch_step(sizes, loss_name, batch):
    import torch

    dev = torch.device("cuda")
    x_h, y_h = _data(sizes, loss_name, batch)
    x = torch.from_numpy(x_h).to(dev)
    y = torch.from_numpy(y_h).to(dev)
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss() if loss_name == "softmax-ce" else torch.nn.MSELoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, (lambda: torch.cuda.synchronize(dev))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,medium")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    records = []
    for name in args.configs.split(","):
        sizes, loss, batch = CONFIGS[name]
        eager, graph_call, graph, sync = arrayprop_steps(sizes, loss, batch)
        t_eager = _time(eager, sync, args.steps, args.repeat)
        t_graph = _time(graph_call, sync, args.steps, args.repeat)
        t_torch = _time(*torch_step(sizes, loss, batch), args.steps, args.repeat)
        rec = {
            "config": name,
            "sizes": list(sizes),
            "batch": batch,
            "arrayprop_eager_s": t_eager,
            "arrayprop_graph_s": t_graph,
            "torch_eager_s": t_torch,
            "graph_captured": graph.captured,
            "graph_reason": graph.reason,
            "eager_vs_torch": t_torch / t_eager,
            "graph_vs_torch": t_torch / t_graph,
        }
        records.append(rec)
        print(
            f"{name:7s} eager {t_eager * 1e6:8.1f} us  graph {t_graph * 1e6:8.1f} us "
            f"(captured={graph.captured})  torch eager {t_torch * 1e6:8.1f} us  "
            f"graph speed-up vs torch x{rec['graph_vs_torch']:.2f}",
            flush=True,
        )
        if graph.reason:
            print(f"        graph fallback: {graph.reason}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=2)
    if args.markdown:
        lines = [
            "| config | arrayprop eager (us) | arrayprop CUDA graph (us) | PyTorch eager (us) "
            "| eager vs torch | graph vs torch |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in records:
            graph = f"{r['arrayprop_graph_s'] * 1e6:.1f}" + ("" if r["graph_captured"] else " *")
            lines.append(
                f"| {r['config']} | {r['arrayprop_eager_s'] * 1e6:.1f} | {graph} | "
                f"{r['torch_eager_s'] * 1e6:.1f} | x{r['eager_vs_torch']:.2f} | "
                f"x{r['graph_vs_torch']:.2f} |"
            )
        if not all(r["graph_captured"] for r in records):
            lines.append("\n\\* capture failed; eager fallback timed (see graphs.json reasons)")
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    failed = [r["config"] for r in records if not r["graph_captured"]]
    if failed:
        print(f"CUDA-graph capture failed on: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
