# hypercut — common tasks. Every target installs what it needs first (into .venv).
PYTHON ?= python3
VENV ?= .venv
# The exact CPU wheel on machines without a GPU; a GPU user passes their own, e.g. TORCH=torch==2.6.0
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hypercut-installed
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_SILENT := true
# Where `make train` writes everything; override with `make train RUN_DIR=...`
RUN_DIR ?= runs/demo

.PHONY: install test test-all lint bench train clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/run_all.py --out bench/results.json

train: $(STAMP)
	$(PY) -m hypercut.demo --out $(RUN_DIR)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache outputs multirun runs wandb src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
