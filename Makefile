# The two commands a newcomer runs: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup os-packages venv demo docs test lint bench stack-up stack-down clean

## setup: OS packages (mosquitto, influxdb) when missing, then a virtualenv with the project
setup: os-packages venv

os-packages:
	@bash deploy/install-os-packages.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) deploy/check-python.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: its own stack on free ports → simulate a month for four suppliers → collect →
## process → export; everything under out/demo (the checkout stays clean)
demo: setup
	$(BIN)/supplymeter demo

## docs: the demo, refreshing the sample workbook and dashboard panel under docs/
docs: setup
	$(BIN)/supplymeter demo --samples docs

## test: lint, then the whole suite (starts its own Mosquitto and InfluxDB on free ports)
test: setup lint
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

REAL_LOADS ?= ../shared/data/real-loads

## bench: benchmarks against real Mosquitto + InfluxDB; prints figures and their ceilings
bench: setup
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_collector.py
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_accounting.py
	$(BIN)/python bench/bench_alerts.py
	$(BIN)/python bench/bench_alerts_scale.py
	$(BIN)/python bench/bench_realism.py --series $(REAL_LOADS)
	$(BIN)/python bench/bench_alerts_real.py --series $(REAL_LOADS) --simulated

stack-up: setup
	$(BIN)/supplymeter stack up

stack-down: venv
	$(BIN)/supplymeter stack down

clean:
	-$(BIN)/supplymeter stack down 2>/dev/null
	rm -rf $(VENV) .stack out .pytest_cache .ruff_cache .hypothesis *.egg-info
