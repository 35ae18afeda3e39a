"""Peak memory of one train step, each measured in a fresh interpreter.

:func:`measure_memory` runs ``python -m arrayprop.bench.memory_child`` (see
:mod:`arrayprop.bench.memory_child`), which builds the workload, warms it up once and
reports, as one JSON line, the resident high-water mark of one more step (CPU) or the
allocator's peak (CUDA).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from arrayprop.bench.configs import BenchConfig, ConvBenchConfig

#: The module run with ``python -m`` in the child. It is never imported here: ``-m`` would
#: then find it already in ``sys.modules`` and warn.
CHILD_MODULE = "arrayprop.bench.memory_child"
#: The start of the child's one line of output that holds the result (other lines are ignored).
RESULT_PREFIX = "ARRAYPROP_MEMORY "


def measure_memory(
    impl: str,
    cfg: BenchConfig | ConvBenchConfig | str,
    backend: str = "numpy",
    device: str | None = None,
    batch: int | None = None,
    seed: int = 0,
    timeout: float = 600,
) -> dict:
    """Peak memory of one train step, measured in a fresh subprocess (see docs/benchmarks.md).

    Returns the child's result (:func:`arrayprop.bench.memory_child.measure_step`); raises
    ``RuntimeError`` with the child's last line of output if it prints no result.
    """
    name = cfg if isinstance(cfg, str) else cfg.name
    spec = {
        "impl": impl,
        "config": name,
        "backend": backend,
        "device": device,
        "batch": batch,
        "seed": seed,
    }
    env = dict(os.environ)
    # parents[2]: the directory that holds the arrayprop package (src/ in a checkout)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line.removeprefix(RESULT_PREFIX))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"memory child for {impl}/{name}/{backend} failed: {tail[0]}")
