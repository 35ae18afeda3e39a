# Two entry points on a fresh machine with Python >= 3.10 and make:
#   make train   set up .venv and train on the embedded digits (the main job)
#   make test    set up .venv with the test extras and run the whole test suite
# Without a GPU too (CI runs it):
#   make compile-check   NVRTC compiles every CuPy kernel for float16/32/64 (sm_90), in a venv
#                        of its own ($(CUPY_VENV): CuPy and NVRTC wheels, no driver needed)
# On a lent GPU machine (CuPy, PyTorch, NumPy, pytest there; no package registry):
#   make wheels-gpu   here, with network: the pure-Python wheels the suite needs, into .whl/
#   make test-gpu     there, with .whl/ carried along: every GPU check in stages with hard
#                     limits (at most 9 minutes), 5 result files in $(GPU_OUT)
#                     (scripts/gpu_once.sh; docs/gpu.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch (the reference for tests and the benchmark peer). Override to use another build.
TORCH_SPEC ?= torch==2.13.0

# Wheels the GPU machine lacks (pinned to the versions tested here). The plot set is binary
# (cp312, manylinux) and optional: only the benchmark's --plot needs it.
GPU_PYTHON_VERSION ?= 3.12
GPU_WHEELS ?= array-api-compat==1.16.0 array-api-strict==2.6.1 hypothesis==6.170.15 \
	sortedcontainers==2.4.0 tqdm==4.70.1 threadpoolctl==3.8.0 pytest-xdist==3.8.0 execnet==2.1.2
GPU_PLOT_WHEELS ?= matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 \
	kiwisolver==1.5.1 pillow==13.0.0 pyparsing==3.3.3 python-dateutil==4.0.0 tzdata==2026.6
GPU_DOWNLOAD = $(PYTHON) -m pip download -q --no-deps --only-binary=:all: \
	--python-version $(GPU_PYTHON_VERSION) --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64

# The compile check's own venv, so that .venv stays as `make test` builds it (pins as checked).
CUPY_VENV ?= .venv-cupy
CUPY_SPEC ?= cupy-cuda12x==14.2.0 nvidia-cuda-nvrtc-cu12==12.9.86 array-api-compat==1.16.0 \
	tqdm==4.70.1
CUPY_ARCH ?= 90

.PHONY: train test lint bench clean wheels-gpu test-gpu compile-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

# MPI for the multi-rank tests (tests/distributed/test_mpi.py, which fail under CI=true without
# it): the [mpi] extra (mpi4py and the Open MPI wheel), else mpi4py with the MPICH wheel; then
# mpi4py must load the library.
$(VENV)/.test: $(VENV)/.base
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q -e ".[mpi]" || $(BIN)/python -m pip install -q mpi4py mpich
	$(BIN)/python -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"
	touch $@

train: $(VENV)/.base
	$(BIN)/arrayprop train

test: $(VENV)/.test
	$(BIN)/python -m pytest

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

bench: $(VENV)/.test
	$(BIN)/arrayprop bench

# Step 1 installs CuPy and NVRTC (~230 MB of wheels) into $(CUPY_VENV); step 2 compiles every
# kernel for every dtype; step 3 plants a float16-only C++ error and requires the check to fail.
$(CUPY_VENV)/.cupy:
	$(PYTHON) -m venv $(CUPY_VENV)
	$(CUPY_VENV)/bin/python -m pip install -q $(CUPY_SPEC)
	touch $@

compile-check: $(CUPY_VENV)/.cupy
	$(CUPY_VENV)/bin/python scripts/cupy_compile_check.py --arch $(CUPY_ARCH)
	@$(CUPY_VENV)/bin/python scripts/cupy_compile_check.py --arch $(CUPY_ARCH) --plant-error \
		--kernels arrayprop_planted_relu_without_casts > $(CUPY_VENV)/planted.log; \
	status=$$?; cat $(CUPY_VENV)/planted.log; \
	if [ $$status -eq 1 ] && grep -q "^FAIL arrayprop_planted_relu_without_casts float16" \
		$(CUPY_VENV)/planted.log; then echo "compile check: the planted error was caught"; \
	else echo "compile check: the planted error was NOT caught (exit $$status)"; exit 1; fi

wheels-gpu:
	$(GPU_DOWNLOAD) -d .whl $(GPU_WHEELS)
	$(GPU_DOWNLOAD) -d .whl/plot $(GPU_PLOT_WHEELS)

GPU_OUT ?= out/gpu

test-gpu:
	bash scripts/gpu_once.sh $(GPU_OUT)

clean:
	rm -rf $(VENV) $(CUPY_VENV) .pytest_cache .ruff_cache .benchmarks .hypothesis
