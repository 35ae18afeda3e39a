"""pytest-benchmark suite options: which configs / backends / device to benchmark.

    pytest benchmarks/ --benchmark-only                       # all configs, installed backends
    pytest benchmarks/ --benchmark-only --bench-configs tiny  # quick run
    ARRAYPROP_BENCH_CONFIGS=tiny,small pytest benchmarks/ --benchmark-only

Options (or environment variables):
  --bench-configs   ARRAYPROP_BENCH_CONFIGS   comma-separated (default: all five)
  --bench-backends  ARRAYPROP_BENCH_BACKENDS  comma-separated arrayprop backends
                                              (default: numpy plus torch / cupy / jax when
                                              importable and, for cupy, a GPU is present)
  --bench-device    ARRAYPROP_BENCH_DEVICE    device for the backends and the PyTorch peer
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from arrayprop import bench


def pytest_addoption(parser):
    group = parser.getgroup("arrayprop-bench")
    group.addoption(
        "--bench-configs",
        default=os.environ.get("ARRAYPROP_BENCH_CONFIGS"),
        help=f"configs to benchmark (default: {','.join(bench.CONFIGS)})",
    )
    group.addoption(
        "--bench-backends",
        default=os.environ.get("ARRAYPROP_BENCH_BACKENDS"),
        help="arrayprop backends (default: the installed ones)",
    )
    group.addoption(
        "--bench-device",
        default=os.environ.get("ARRAYPROP_BENCH_DEVICE"),
        help="device for the backends and the PyTorch peer (e.g. cuda:0)",
    )


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def installed_backends() -> list[str]:
    found = ["numpy"]
    if _has("torch"):
        found.append("torch")
    if _has("cupy"):
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                found.append("cupy")
        except Exception:
            pass
    if _has("jax"):
        found.append("jax")
    return found


def bench_cases(config) -> list[tuple[str, str, str]]:
    """(config, impl, backend) triples: arrayprop + GEMM ceiling per backend, one
    PyTorch-eager peer per torch device, and the NumPy reference loop."""
    configs = [c.name for c in bench.get_configs(config.getoption("--bench-configs"))]
    names = config.getoption("--bench-backends")
    backends = (
        bench.parse_names(names, bench.BACKENDS, "backend") if names else installed_backends()
    )
    device = config.getoption("--bench-device")
    peers: dict[str, str] = {}
    if _has("torch"):
        for b in backends:
            peers.setdefault(bench.torch_device_for(b, device), b)
    cases = []
    for c in configs:
        for b in backends:
            cases += [(c, "arrayprop", b), (c, "gemm", b)]
        cases += [(c, "torch-eager", b) for b in peers.values()]
        cases.append((c, "numpy-ref", "numpy"))
    return cases


def pytest_generate_tests(metafunc):
    if "bench_case" in metafunc.fixturenames:
        cases = bench_cases(metafunc.config)
        device = metafunc.config.getoption("--bench-device")
        ids = [
            f"{c}-{impl}[{bench.torch_device_for(b, device) if impl == 'torch-eager' else b}]"
            for c, impl, b in cases
        ]
        metafunc.parametrize("bench_case", cases, ids=ids)


@pytest.fixture
def bench_device(request):
    return request.config.getoption("--bench-device")
