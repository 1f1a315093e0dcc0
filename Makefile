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

PREFIX ?= /opt/sigd
DESTDIR ?=
INSTALL_ARGS ?=

.PHONY: setup run test test-fast lint docs bench clean install-service uninstall-service

setup: $(STAMP)

# One line per step before it starts (pip stays -q: its own output is thousands of lines).
$(STAMP): pyproject.toml
	@echo "setup 1/4: creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "setup 2/4: upgrading pip"
	$(PY) -m pip install -q --upgrade pip
	@echo "setup 3/4: installing PyTorch ($(TORCH_SPEC)); the largest download, a minute or more"
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	@echo "setup 4/4: installing sigd and its dependencies (editable, with the dev extra)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)
	@echo "setup done: $(VENV) is ready"

run: setup
	$(VENV)/bin/sigd run -c config.toml

# The suite runs on TEST_WORKERS parallel pytest-xdist workers (--dist loadgroup: the tests that
# share one local Ray or one module's trained models stay on one worker, tests/conftest.py).
# Most end-to-end tests wait on a replay clock, so 3 workers fit 2 cores; TEST_WORKERS=0 runs
# the suite in one process (a debugger, or output in test order).
TEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# The inner loop (<= 90 s on 2 idle cores): the unit-level test files below, without the `slow`
# marker; no daemon subprocess, no Ray, no browser, no training beyond a few tiny steps.
# `make test` runs everything; CI runs `make test`.
FAST_TESTS ?= tests/test_config.py tests/test_events.py tests/test_log.py tests/test_layers.py \
	tests/test_docs_reference.py tests/strategies tests/trading tests/alerts tests/market/test_bars.py \
	tests/models/test_pipeline_threshold.py tests/models/test_pipeline_features.py \
	tests/models/test_pipeline_data.py tests/models/test_pipeline_shipped.py \
	tests/models/test_family_blocks.py tests/models/test_training_features.py \
	tests/research/test_selection_stats.py tests/research/test_backtest_metrics.py \
	tests/localexchange/test_localexchange_book.py tests/service/test_metrics.py
test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not bench" $(FAST_TESTS) $(PYTEST_ARGS)

# Habits CI keeps: ruff lint and format check over the tree, mypy (strict on strategies/, the
# domain types and the decision function; pyproject.toml [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site, built strictly (a broken link, a missing page or anchor fails it);
# the reference pages are generated from the code by docs/gen_reference.py at build time.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --clean --quiet

bench: setup
	$(PY) -m bench

# As root: a fresh venv at $(PREFIX) with sigd installed into it, /etc/sigd, the unit, daemon-reload.
# Uses the system python3 only to create that venv (the checkout's .venv is not needed).
# INSTALL_ARGS=--dry-run prints the plan; DESTDIR=DIR stages it.
install-service:
	$(PYTHON) -m daemon install-service --prefix $(PREFIX) --torch-spec "$(TORCH_SPEC)" $(if $(DESTDIR),--destdir $(DESTDIR)) $(INSTALL_ARGS)

uninstall-service:
	$(PYTHON) -m daemon uninstall-service --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) $(INSTALL_ARGS)

clean:
	rm -rf $(VENV) state runs reports
