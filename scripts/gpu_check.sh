#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command (docs/gpu.md, "Running the GPU checks").
#
#   bash scripts/gpu_check.sh [all|setup|tests|graphs|bench]   (make test-gpu runs all)
#
# The GPU machine has Python, CuPy, PyTorch (CUDA), NumPy, pytest and pytest-benchmark but no
# package registry: `make wheels-gpu`, run beforehand where there is network, puts the other
# wheels into .whl/ (carry that directory along). Every stage first installs them into
# $GPU_SITE (default /tmp/site) and records the environment; then:
#   setup   nothing more
#   tests   pytest --backend cupy, then pytest --backend torch with ARRAYPROP_DEVICE=cuda
#   graphs  scripts/gpu_graph_bench.py: eager vs CUDA-graph steps vs PyTorch eager, tiny/small
#   bench   the arrayprop benchmark on numpy, cupy and torch (CUDA), with the batch-size sweep
# Each stage fits in a 10-minute slot; `all` runs the three in a row. Logs and results go to
# $OUT when it is set, else to out/gpu/. The exit status is non-zero when a stage failed.
set -u -o pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAGE=${1:-all}
RESULTS=${OUT:-out/gpu}
SITE=${GPU_SITE:-/tmp/site}
mkdir -p "$RESULTS"
status=0

log() { echo "== $*" | tee -a "$RESULTS/gpu_check.log"; }

install_wheels() {
    # Pure-Python wheels first; the optional plot set is binary and must match this Python.
    local dir
    for dir in .whl .whl/plot; do
        compgen -G "$dir/*.whl" >/dev/null || continue
        if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
            --target "$SITE" "$dir"/*.whl 2>>"$RESULTS/pip.log"; then
            log "some wheels in $dir do not fit $("$PY" -V 2>&1); installing one by one"
            local w
            for w in "$dir"/*.whl; do
                "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
                    --target "$SITE" "$w" 2>>"$RESULTS/pip.log" || log "skipped $w"
            done
        fi
    done
}

environment() {
    "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version(), platform.platform())
for name in ("numpy", "cupy", "torch", "array_api_compat", "array_api_strict", "hypothesis",
             "pytest", "matplotlib"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:
        print(name, "unavailable:", type(exc).__name__, exc)
try:
    import cupy
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    print("cuda runtime", rt.runtimeGetVersion(), "driver", rt.driverGetVersion())
    print("device", props["name"].decode(), "cc", props["major"], props["minor"])
except Exception as exc:
    print("cupy device query failed:", exc)
try:
    import torch
    print("torch cuda", torch.version.cuda, torch.cuda.is_available())
except Exception as exc:
    print("torch query failed:", exc)
EOF
}

run() {  # run NAME CMD...: tee the output to $RESULTS/NAME.log, remember a failure
    local name=$1
    shift
    log "$name: $*"
    "$@" 2>&1 | tee "$RESULTS/$name.log"
    local rc=${PIPESTATUS[0]}
    log "$name: exit $rc"
    [ "$rc" -eq 0 ] || status=1
}

bench_cli() {  # the `arrayprop bench` command, whichever module provides it here
    if "$PY" -c "from arrayprop.cli import main" 2>/dev/null; then
        "$PY" -c "import sys; from arrayprop.cli import main; sys.exit(main())" bench "$@"
    else
        "$PY" -m arrayprop.bench "$@"
    fi
}

case $STAGE in
    all | setup | tests | graphs | bench) ;;
    *) log "unknown stage '$STAGE' (all, setup, tests, graphs, bench)"; exit 2 ;;
esac

install_wheels
export PYTHONPATH="src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
environment | tee "$RESULTS/environment.txt"
command -v nvidia-smi >/dev/null && nvidia-smi >>"$RESULTS/environment.txt" 2>&1

if [ "$STAGE" = all ] || [ "$STAGE" = tests ]; then
    run pytest-cupy "$PY" -m pytest -q -rs -p no:cacheprovider --backend cupy \
        --junitxml "$RESULTS/pytest-cupy.xml"
    run pytest-torch-cuda env ARRAYPROP_DEVICE=cuda "$PY" -m pytest -q -rs -p no:cacheprovider \
        --backend torch --junitxml "$RESULTS/pytest-torch-cuda.xml"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = graphs ]; then
    run graph-bench "$PY" scripts/gpu_graph_bench.py --json "$RESULTS/graphs.json" \
        --markdown "$RESULTS/graphs.md"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = bench ]; then
    plot=()
    "$PY" -c "import matplotlib" 2>/dev/null && plot=(--plot "$RESULTS/gpu.png")
    bench_args=(--device cuda --sweep --max-time "${GPU_BENCH_MAX_TIME:-2}"
        --json "$RESULTS/gpu.json" --markdown "$RESULTS/gpu.md" ${plot[@]+"${plot[@]}"})
    backends=${GPU_BENCH_BACKENDS:-numpy,cupy,torch}
    # --device applies to cupy and torch; numpy stays on the host, so BLAS and CUDA are side by side.
    run bench bench_cli --backends "$backends" "${bench_args[@]}"
fi

log "done: stage $STAGE, status $status, results in $RESULTS"
exit "$status"
