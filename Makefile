# kbatch: one target per job. `make demo` sets everything up and runs the example pipeline on the
# local cluster; `make test` runs the whole suite (unit, integration, end-to-end) and fails if the
# integration tests were skipped.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := $(shell scripts/venv.sh)
PY = $(VENV)/bin/python
DEMO_DIR ?= $(or $(KBATCH_CACHE),$(HOME)/.cache/kbatch)/demo

.PHONY: setup build lint unit integration e2e test demo down bench clean-cache
setup:          ## virtualenv + control plane binaries (cached outside the repo)
	@$(PY) -m airflow_provider_kbatch.devcluster build >/dev/null

build: setup

lint:           ## ruff, mypy, import contracts (pure core imports neither Airflow nor kubernetes)
	$(VENV)/bin/ruff check airflow_provider_kbatch tests dags benchmarks
	$(VENV)/bin/ruff format --check airflow_provider_kbatch tests dags benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

unit:           ## pure logic only, no cluster
	$(PY) -m pytest tests/unit -q

integration: setup  ## against the real local control plane
	KBATCH_REQUIRE_INTEGRATION=1 $(PY) -m pytest tests/integration -q

e2e: setup      ## real Airflow 3 (dags test, scheduler, triggerer) against the local cluster
	KBATCH_REQUIRE_INTEGRATION=1 $(PY) -m pytest tests/e2e -q

test: setup lint  ## everything; skipped integration/e2e tests count as failures
	KBATCH_REQUIRE_INTEGRATION=1 $(PY) -m pytest tests -q -p no:cacheprovider --junitxml=.pytest-results.xml
	$(PY) scripts/check_junit.py .pytest-results.xml

demo: setup     ## start the local cluster and run the example pipeline with `airflow dags test`
	$(PY) scripts/demo.py --state-dir "$(DEMO_DIR)"

down:           ## stop the demo cluster
	$(PY) -m airflow_provider_kbatch.devcluster --state-dir "$(DEMO_DIR)/cluster" down

bench: setup    ## print the headline figures of the README
	$(PY) benchmarks/run.py
