# Two commands on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make run    create .venv, install the exporter, serve examples/demo.yml on :10132
#   make test   install what the tests need (Debian packages, test tools), lint, run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/demo.yml
ARGS   ?=

.PHONY: run install test test-deps lint clean bench bench-load catalog backtest

$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/pip
	$(BIN)/pip install --quiet .

run: install
	$(BIN)/azurestack-exporter --config.file=$(CONFIG) $(ARGS)

test-deps: $(BIN)/pip
	bash tests/install-system-packages.sh
	$(BIN)/pip install --quiet '.[test]'

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# Benchmarks (not tests): they print figures, measured against a floor in the same run.
bench: test-deps
	bash tests/install-system-packages.sh bench
	$(BIN)/python bench/bench.py $(ARGS)

bench-load: test-deps
	bash tests/install-system-packages.sh bench
	$(BIN)/python bench/load.py

# The bundled catalog is generated from its sourced table; the forecast is replayed on it.
catalog: $(BIN)/pip
	$(BIN)/pip install --quiet .
	$(BIN)/python tools/build_catalog.py

backtest: $(BIN)/pip
	$(BIN)/pip install --quiet .
	$(BIN)/python tools/backtest_forecast.py --compare

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
