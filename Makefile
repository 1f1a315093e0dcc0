# sigd — two commands for a fresh machine:
#   make run    set everything up, then run the daemon on the shipped config.toml
#   make test   set everything up, then run the test suite
# Setup installs PyTorch first: TORCH_SPEC defaults to the CPU build these machines carry
# (pip install torch==2.13.0). With a GPU: make TORCH_SPEC="torch" (CUDA build from PyPI).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sigd-installed

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	$(VENV)/bin/sigd run -c config.toml

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) state runs reports
