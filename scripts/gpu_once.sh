#!/usr/bin/env bash
# Every GPU check in one command that fits a short GPU lease (docs/gpu.md, "Running the GPU
# checks"): stages with hard time limits adding up to at most 9 minutes, results in at most 5
# files.
#
#   bash scripts/gpu_once.sh [OUT]     results in OUT, else $GPU_OUT, else out/gpu (= make test-gpu)
#   bash scripts/gpu_once.sh --plan    print the stages and their limits; run nothing
#
# The machine needs Python, CuPy, PyTorch (CUDA), NumPy and pytest; no package registry: the
# pure-Python wheels the suite needs come from .whl/ (`make wheels-gpu` where there is network,
# then carry .whl/ along), installed into $GPU_SITE (default /tmp/site), never into the system.
#
# Stages (seconds; each is killed at its limit, which fails it):
#   preflight   40  wheels from .whl/ (15 s), versions (CUDA runtime and driver, NVRTC, cuBLAS, CuPy,
#                   PyTorch), GPU name and memory, git revision -> environment.json.
#                   No GPU (nvidia-smi missing, failing or listing none): exit 3 at once.
#   compile     45  scripts/cupy_compile_check.py: NVRTC compiles every kernel for float16/32/64
#                   for this GPU's architecture
#   unit        90  the GPU unit tests: tests/backends/test_cupy.py (kernels against the portable
#                   code on the device, capture GEMM, CUDA graphs, TF32, float16) and the
#                   CudaGraphStep control-flow tests, --backend cupy --device cuda
#   graphs      60  scripts/gpu_graph_bench.py on tiny, small, medium: a capture that fails
#                   fails the stage
#   bench      120  arrayprop bench --backends cupy,torch --device cuda over the five configs
#   suites     180  the whole suite with --backend cupy,torch --device cuda (xdist when present)
# GPU_ONCE_STAGES="graphs bench" runs only those after the preflight (to rerun a failed stage);
# GPU_ONCE_LIMIT_<STAGE>=S changes a limit (the sum must stay <= 540).
#
# Files in OUT (nothing else is written there):
#   summary.md        verdict per stage (passed / failed / timed out, seconds, limit), the tail of
#                     each failed stage's log, the pytest result lines
#   environment.json  versions, GPU, git revision, import-time warnings
#   tables.md         compile check, CUDA graphs and benchmark tables
#   bench.json        the benchmark's JSON (record it under benchmarks/results/)
#   logs.tar.gz       every log, JUnit XML and JSON of the run
# Exit status: 0 every stage passed; 1 a stage failed or timed out; 2 usage; 3 no GPU here.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
STAGES=(preflight compile unit graphs bench suites)
declare -A LIMIT=([preflight]=40 [compile]=45 [unit]=90 [graphs]=60 [bench]=120 [suites]=180)
BUDGET=540

for stage in "${STAGES[@]}"; do
    var="GPU_ONCE_LIMIT_${stage^^}"
    [ -n "${!var:-}" ] && LIMIT[$stage]=${!var}
done
total=0
for stage in "${STAGES[@]}"; do total=$((total + LIMIT[$stage])); done

if [ "${1:-}" = "--plan" ]; then
    for stage in "${STAGES[@]}"; do printf '%s %s\n' "$stage" "${LIMIT[$stage]}"; done
    printf 'total %s\n' "$total"
    exit 0
fi
case "${1:-}" in -*) echo "usage: $0 [OUT] | --plan" >&2; exit 2 ;; esac
if [ "$total" -gt "$BUDGET" ]; then
    echo "gpu_once: the stage limits add up to ${total}s, more than ${BUDGET}s" >&2
    exit 2
fi
SELECTED=${GPU_ONCE_STAGES:-compile unit graphs bench suites}
for stage in $SELECTED; do
    case " ${STAGES[*]} " in *" $stage "*) ;; *) echo "gpu_once: unknown stage $stage" >&2; exit 2 ;; esac
done

OUT=${1:-${GPU_OUT:-out/gpu}}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
SITE=${GPU_SITE:-/tmp/site}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
# JAX with its CUDA plugin would take 75% of the GPU memory in every test process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
unset ARRAYPROP_DEVICE ARRAYPROP_BACKEND ARRAYPROP_KERNELS  # the tests take --backend, --device
status=0
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
: >"$WORK/stages.tsv"

log() { echo "== $*" | tee -a "$WORK/gpu_once.log"; }

record() {  # record NAME VERDICT RC SECONDS
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${LIMIT[$1]}" >>"$WORK/stages.tsv"
    log "$1: $2 (exit $3, $4 s of ${LIMIT[$1]} s)"
    [ "$2" = passed ] || status=1
}

run_stage() {  # run_stage NAME CMD...: the command under the stage's hard limit, logged
    local name=$1 start=$SECONDS rc verdict=passed
    shift
    log "$name (limit ${LIMIT[$name]} s): $*"
    timeout -k 5 "${LIMIT[$name]}" "$@" 2>&1 | tee "$WORK/$name.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        verdict="timed out"
    elif [ "$rc" -ne 0 ]; then
        verdict=failed
    fi
    record "$name" "$verdict" "$rc" $((SECONDS - start))
}

finish() {  # write the result files into $OUT and exit with $1
    local code=$1
    git -C "$ROOT" rev-parse HEAD >"$WORK/git-revision.txt" 2>&1
    "$PY" - "$WORK" "$OUT" "$code" "$started" <<'EOF' 2>>"$WORK/gpu_once.log"
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

work, out, code, started = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
env = {}
if (work / "environment.json").exists():
    env = json.loads((work / "environment.json").read_text())
stages = [line.split("\t") for line in (work / "stages.tsv").read_text().splitlines() if line]
gpu = env.get("gpu") or {"name": (env.get("nvidia_smi") or "no GPU").split(",")[0]}
revision = env.get("git_revision") or (work / "git-revision.txt").read_text().strip()[:40]
lines = [
    f"# GPU run {started}: {gpu.get('name', 'no GPU')}, revision {revision}",
    "",
    f"exit status {code}" + {0: " (all passed)", 1: " (a stage failed)", 3: " (no GPU)"}.get(code, ""),
    "",
    "| stage | result | exit | seconds | limit |",
    "|---|---|---:|---:|---:|",
]
lines += [f"| {n} | {v} | {rc} | {s} | {lim} |" for n, v, rc, s, lim in stages]
for name in ("unit", "suites"):
    xml = work / f"{name}.xml"
    if xml.exists():
        try:
            root = ET.parse(xml).getroot()
            suite = root if root.tag == "testsuite" else root.find("testsuite")
            counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}
            failed = [
                f"{case.get('classname')}::{case.get('name')}"
                for case in suite.iter("testcase")
                if case.find("failure") is not None or case.find("error") is not None
            ]
            lines += ["", f"## pytest `{name}`: {counts}"]
            lines += [f"- {f}" for f in failed[:40]]
            if len(failed) > 40:
                lines.append(f"- ... and {len(failed) - 40} more (logs.tar.gz: {name}.xml)")
        except ET.ParseError as exc:
            lines += ["", f"## pytest `{name}`: unreadable JUnit XML ({exc})"]
for name, verdict, *_ in stages:
    log = work / f"{name}.log"
    if verdict != "passed" and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        lines += ["", f"## {name}: {verdict}, last lines of its log", "```", *tail, "```"]
if env.get("import_warnings"):
    lines += ["", "## import-time warnings", *[f"- {w}" for w in env["import_warnings"]]]
(out / "summary.md").write_text("\n".join(lines) + "\n")
if env:
    (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
tables = []
for name, title in (("compile.txt", "Compile check"), ("graphs.md", "CUDA graphs"), ("bench.md", "Benchmark")):
    if (work / name).exists():
        tables += [f"## {title}", "", (work / name).read_text().rstrip(), ""]
if tables:
    (out / "tables.md").write_text("\n".join(tables))
if (work / "bench.json").exists():
    (out / "bench.json").write_text((work / "bench.json").read_text())
EOF
    tar -czf "$OUT/logs.tar.gz" -C "$WORK" . 2>/dev/null || log "could not write logs.tar.gz"
    log "done: exit $code; results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
    [ -f "$OUT/summary.md" ] && cat "$OUT/summary.md"
    exit "$code"
}

# --------------------------------------------------------------------------- preflight
start=$SECONDS
log "preflight (limit ${LIMIT[preflight]} s)"
if ! timeout 5 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
    --format=csv,noheader >"$WORK/nvidia-smi.txt" 2>&1 || ! [ -s "$WORK/nvidia-smi.txt" ] ||
    grep -qiE "fail|error|not found|no devices" "$WORK/nvidia-smi.txt"; then
    log "no GPU here: $(head -c 300 "$WORK/nvidia-smi.txt" 2>/dev/null)"
    printf '{"gpu": null, "nvidia_smi": %s}\n' \
        "$("$PY" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' \
        "$WORK/nvidia-smi.txt" 2>/dev/null || echo null)" >"$WORK/environment.json"
    record preflight "no GPU" 3 $((SECONDS - start))
    finish 3
fi
timeout 5 nvidia-smi >>"$WORK/nvidia-smi.txt" 2>&1
# The wheels of .whl/ (not .whl/plot: nothing here plots), all at once, else one by one (a
# binary wheel of another Python is skipped), within 15 s.
PIP=(timeout 15 "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE")
if compgen -G ".whl/*.whl" >/dev/null && ! "${PIP[@]}" .whl/*.whl >>"$WORK/pip.log" 2>&1; then
    for w in .whl/*.whl; do
        [ $((SECONDS - start)) -lt 25 ] || { log "no time left to install $w"; continue; }
        "${PIP[@]}" "$w" >>"$WORK/pip.log" 2>&1 || log "skipped $w"
    done
fi
cat >"$WORK/environment.py" <<'EOF'
import importlib, json, platform, subprocess, sys, warnings

env = {"python": platform.python_version(), "platform": platform.platform()}
caught = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in ("numpy", "cupy", "torch", "jax", "array_api_compat", "array_api_strict",
                 "pytest", "xdist", "hypothesis", "matplotlib", "arrayprop"):
        try:
            env[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as exc:
            env[name] = f"unavailable: {type(exc).__name__}: {exc}"
env["import_warnings"] = [f"{w.category.__name__} from {w.filename}:{w.lineno}: {w.message}" for w in caught]
try:
    import cupy
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    env["gpu"] = {
        "name": props["name"].decode(),
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "compute_capability": f"{props['major']}{props['minor']}",
        "count": rt.getDeviceCount(),
    }
    env["cuda_runtime"], env["cuda_driver"] = rt.runtimeGetVersion(), rt.driverGetVersion()
    env["nvrtc"] = ".".join(map(str, cupy.cuda.nvrtc.getVersion()))
    env["cublas"] = cupy.cuda.cublas.getVersion(cupy.cuda.device.get_cublas_handle())
except Exception as exc:
    env["cupy_error"] = f"{type(exc).__name__}: {exc}"
try:
    import torch
    env["torch_cuda"] = {"cuda": torch.version.cuda, "available": torch.cuda.is_available(),
                         "cudnn": torch.backends.cudnn.version()}
    if torch.cuda.is_available():
        env["torch_cuda"]["device"] = torch.cuda.get_device_name(0)
except Exception as exc:
    env["torch_error"] = f"{type(exc).__name__}: {exc}"
with open(sys.argv[2]) as f:
    env["nvidia_smi"] = f.read().splitlines()[0]
env["git_revision"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()
env["git_dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                       capture_output=True, text=True).stdout.strip())
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env, indent=1))
EOF
timeout 15 "$PY" "$WORK/environment.py" "$WORK/environment.json" "$WORK/nvidia-smi.txt" \
    >"$WORK/preflight.log" 2>&1
rc=$?
cat "$WORK/preflight.log"
if [ "$rc" -eq 0 ]; then record preflight passed 0 $((SECONDS - start)); else
    record preflight "$([ "$rc" -eq 124 ] && echo 'timed out' || echo failed)" "$rc" $((SECONDS - start))
fi
# sm_XY of the first GPU (compute_cap "9.0" -> 90), for the compile check.
ARCH=$(head -n 1 "$WORK/nvidia-smi.txt" | awk -F', ' '{print $4}' | tr -d '.[:space:]')
[[ "$ARCH" =~ ^[0-9]+$ ]] || ARCH=90

# --------------------------------------------------------------------------- the stages
# Warnings are errors in the suite (pyproject.toml's filterwarnings); one that a library raises
# while it is imported would stop collection (0 tests). So the libraries' own warnings are shown
# instead: the project's filters plus a "default" line for the libraries' modules, as an ini
# override because only the ini form takes a regex (-W matches one module name exactly).
LIBS='default:::(cupy|cupyx|cupy_backends|torch|jax|jaxlib)(\..*)?'
FILTERS=$("$PY" -c 'import sys, tomllib
opts = tomllib.load(open("pyproject.toml", "rb"))["tool"]["pytest"]["ini_options"]
print("\n".join([*opts.get("filterwarnings", []), sys.argv[1]]))' "$LIBS" 2>/dev/null) ||
    FILTERS="error"$'\n'"$LIBS"
PYTEST=("$PY" -m pytest -p no:cacheprovider -q -rfE --maxfail=50 -o "filterwarnings=$FILTERS")
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8)
BENCH=("$PY" -c "import sys; from arrayprop.cli import main; sys.exit(main())" bench)

for stage in $SELECTED; do
    case $stage in
        compile)
            run_stage compile "$PY" scripts/cupy_compile_check.py --arch "$ARCH" \
                --json "$WORK/compile.json"
            grep -E "^(compile check|FAIL)" "$WORK/compile.log" >"$WORK/compile.txt" ;;
        unit)
            run_stage unit "${PYTEST[@]}" -rs --backend cupy --device cuda \
                tests/backends/test_cupy.py tests/training/test_cuda_graph.py \
                --junitxml "$WORK/unit.xml" ;;
        graphs)
            run_stage graphs "$PY" scripts/gpu_graph_bench.py --configs tiny,small,medium \
                --steps 100 --repeat 5 --json "$WORK/graphs.json" --markdown "$WORK/graphs.md" ;;
        bench)
            run_stage bench "${BENCH[@]}" --backends cupy,torch --device cuda --repeat 10 \
                --max-time 1 --json "$WORK/bench.json" --markdown "$WORK/bench.md" ;;
        suites)
            run_stage suites "${PYTEST[@]}" ${XDIST[@]+"${XDIST[@]}"} --backend cupy,torch \
                --device cuda --junitxml "$WORK/suites.xml" ;;
    esac
done
finish "$status"
