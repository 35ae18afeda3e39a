# Two entry points on a fresh machine with Python >= 3.10 and make:
#   make train   set up .venv and train on the embedded digits (the main job)
#   make test    set up .venv with the test extras and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch (the reference for tests and the benchmark peer). Override to use another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: train test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

train: $(VENV)/.base
	$(BIN)/arrayprop train

test: $(VENV)/.test
	$(BIN)/python -m pytest

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: $(VENV)/.test
	$(BIN)/arrayprop bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks .hypothesis
