# The README's commands. `make demo` and `make test` set everything up from nothing.
PYTHON ?= python3
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench synth deploy diff clean asl browser openapi

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

demo: $(STAMP)              ## a simulated fleet migrated end to end on the embedded runtime
	$(PY) -m spotctl demo $(ARGS)

browser:                    ## headless Chromium for the execution graph's browser test (skipped without it)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium not installed: the browser test will be skipped"

# Every function at most cyclomatic complexity 10 (radon's rank B), as radon counts it.
COMPLEXITY := --max-absolute B --max-modules B --max-average A

lint: $(STAMP)              ## ruff (lint, import order), mypy --strict on spot_core, the complexity gate
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/xenon $(COMPLEXITY) layers functions spotctl infra tools bench

test: $(STAMP) browser lint ## the gates, then unit, service, adapter, handler, infra (CDK + cdk-nag) and workflow tests
	$(PY) -m pytest -n 2 -q

bench: $(STAMP)             ## API calls, CPU time, transitions and payload sizes at 10 / 1,000 / 10,000 instances
	$(PY) -m bench $(ARGS)
	$(PY) bench/interruption_bench.py   ## calls of one warning and of a 200-warning storm (queue vs direct), handler time, latency, simulated storm
	$(PY) bench/operator_bench.py       ## status/list/plan calls and latency, graph rendering, local service start, API cold import
	$(PY) -m bench.scale_bench          ## timing simulator: 1,000 / 10,000 instances x cases A B C, 28 timing combinations
	$(PY) bench/carry_bench.py          ## timing simulator: downtime of each stateful move, Elastic IPs, calls of the moves
	$(PY) bench/group_bench.py          ## timing simulator: calls, transitions, Spot share per wave of 10 groups x 100, and a rollback
	$(PY) bench/day2_bench.py           ## timing simulator: an on-demand window (its revert and return) and fallbacks returned to Spot

synth: $(STAMP)             ## CloudFormation template into cdk.out/ (no AWS credentials needed)
	$(PY) app.py

deploy: $(STAMP) node_modules/.installed
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH npx cdk deploy SpotMigration $(ARGS)

diff: $(STAMP) node_modules/.installed
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH npx cdk diff SpotMigration

asl:                        ## regenerate statemachines/spot_migration.asl.json from tools/build_asl.py
	$(PY) tools/build_asl.py

openapi:                    ## regenerate docs/openapi.json from the migrations API's routes (tools/build_openapi.py)
	$(PY) tools/build_openapi.py

clean:
	rm -rf $(VENV) cdk.out node_modules .pytest_cache .hypothesis
