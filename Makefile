# kbatch: one target per job. `make demo` sets everything up and runs the example pipeline on the
# local cluster; `make test` runs the whole suite (unit, integration, end-to-end) and fails if the
# integration tests were skipped.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := $(shell scripts/venv.sh)
# The venv is shared by every checkout (it is cached); its editable install points at the last
# checkout that ran venv.sh. This checkout's code comes first for every process the tests start.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
PY = $(VENV)/bin/python
# Test workers (pytest-xdist, --dist loadgroup): `make test TEST_WORKERS=2` runs the e2e tests on
# one worker (one cluster, one Airflow deployment) while the other runs the unit and integration
# tests on a cluster of its own (tests/conftest.py groups them). Its pytest took 21 min 14 s
# against 24 min 9 s in one worker, but two e2e tests failed from the load (a service account
# made after 30 s; an Airflow asset-insert race in a backfill, since guarded by engine/first_event.py),
# so one worker is the default.
TEST_WORKERS ?= 1
# Go tools built from the module proxy and cached beside the control plane (devcluster/tools.py)
GO_TOOLS := helm promtool kueue
DEMO_DIR ?= $(or $(KBATCH_CACHE),$(HOME)/.cache/kbatch)/demo

.PHONY: setup build lint unit integration e2e test demo down airflow-up airflow-down bench clean-cache
setup:          ## virtualenv + control plane binaries (cached outside the repo) + PostgreSQL server, Chromium (apt)
	@compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { echo "kbatch: installing the postgresql package" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { echo "kbatch: installing chromium and chromium-driver (the UI's browser test)" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@$(PY) -m airflow_provider_kbatch.devcluster build $(GO_TOOLS:%=--tool %) >/dev/null

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
	KBATCH_REQUIRE_INTEGRATION=1 $(PY) -m pytest tests -q -p no:cacheprovider $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) --junitxml=.pytest-results.xml
	$(PY) scripts/check_junit.py .pytest-results.xml

demo: setup     ## start the local cluster and run the example pipeline with `airflow dags test`
	$(PY) scripts/demo.py --state-dir "$(DEMO_DIR)"

down:           ## stop the demo cluster
	$(PY) -m airflow_provider_kbatch.devcluster --state-dir "$(DEMO_DIR)/cluster" down

airflow-up: setup  ## a real Airflow deployment (PostgreSQL, api-server, scheduler, triggerer) on the demo cluster
	$(PY) -m airflow_provider_kbatch.devcluster --state-dir "$(DEMO_DIR)/cluster" up
	$(PY) -m airflow_provider_kbatch.devcluster --state-dir "$(DEMO_DIR)/cluster" airflow up --state-dir "$(DEMO_DIR)/airflow-deployment"

airflow-down:   ## stop the Airflow deployment of `make airflow-up` (the demo cluster stays: `make down`)
	$(PY) -m airflow_provider_kbatch.devcluster airflow down --state-dir "$(DEMO_DIR)/airflow-deployment"

# `make bench BENCH_ARGS="--only latency --latency-runs 3"`: one item, other sizes (run.py --help)
BENCH_ARGS ?=
bench: setup    ## the README's figures: the cluster, and kbatch side by side with the official KubernetesJobOperator
	$(PY) benchmarks/run.py $(BENCH_ARGS)
