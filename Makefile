# The two commands a newcomer runs: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup os-packages venv demo docs screenshots test lint bench bench-peers bench-pact-conformance stack-up stack-down clean

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

## screenshots: the console's browser test, saving its screenshots into docs/console (the
## README's); Traditional Chinese needs a CJK font (fonts-noto-cjk)
screenshots: setup
	@fc-list :lang=zh-tw 2>/dev/null | grep -q . || (apt-get install -y -qq --no-install-recommends fonts-noto-cjk >/dev/null)
	SUPPLYMETER_SCREENSHOTS=docs/console $(BIN)/python -m pytest -q tests/app/test_console_browser.py

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
	$(BIN)/python bench/bench_side_by_side.py
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_accounting.py
	$(BIN)/python bench/bench_baselines.py
	$(BIN)/python bench/bench_pact.py
	$(BIN)/python bench/bench_console.py
	$(BIN)/python bench/bench_sessions.py
	$(BIN)/python bench/bench_alerts.py
	$(BIN)/python bench/bench_alerts_scale.py
	$(BIN)/python bench/bench_realism.py --series $(REAL_LOADS)
	$(BIN)/python bench/bench_alerts_real.py --series $(REAL_LOADS) --series bench/data/heavy --simulated --seeds 3

## bench-peers: what a user might pick instead of the collector, for bench_side_by_side.py:
## Node-RED 4 with node-red-contrib-influxdb, from npm into bench/.peers (needs node, npm)
bench-peers:
	command -v npm >/dev/null || (apt-get install -y nodejs npm)
	mkdir -p bench/.peers
	cd bench/.peers && npm install --no-audit --no-fund node-red@4.1.15 node-red-contrib-influxdb@0.7.0

## bench-pact-conformance: the WBCSD PACT conformance service's V3.0 cases against `pact serve`
## over HTTPS (needs node, npm; PACT_CONFORMANCE_DIR=a checkout, else cloned from GitHub into
## bench/.peers/pact-cts, dependencies from npm)
bench-pact-conformance: setup
	command -v npm >/dev/null || (apt-get install -y nodejs npm)
	$(BIN)/python bench/bench_pact_conformance.py

stack-up: setup
	$(BIN)/supplymeter stack up

stack-down: venv
	$(BIN)/supplymeter stack down

clean:
	-$(BIN)/supplymeter stack down 2>/dev/null
	rm -rf $(VENV) .stack out .pytest_cache .ruff_cache .hypothesis *.egg-info
