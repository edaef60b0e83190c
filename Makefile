# The README's commands. Everything installs into .venv from uv.lock; nothing else
# is needed on the machine (PostgreSQL comes from the pgserver wheel).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
VENV := .venv/bin
# sqlfluff's dbt templater compiles the project: an in-memory DuckDB is enough for that
SQLFLUFF := cd transform && ELT_DBT_TARGET=duckdb ELT_DUCKDB_PATH=:memory: ../$(VENV)/sqlfluff

.PHONY: help uv install install-dev demo run deploy test test-fast lint format bench reliability smoke-cloud audit clean

help:
	@echo "make demo    install, start the local stand-ins, run the full ELT on DuckDB"
	@echo "make test    install dev dependencies, lint, run the whole test suite offline"
	@echo "make test-fast  unit tests and the quick integration tests (< 2 min): the inner loop"
	@echo "make run     run the ELT flow against the configured sources and warehouse"
	@echo "make deploy  register the scheduled deployments with the Prefect API in PREFECT_API_URL"
	@echo "make lint    ruff check + ruff format --check + sqlfluff lint of the dbt project"
	@echo "make bench   print the speed figures (name: value)"
	@echo "make reliability  kill, fault and overload real runs; prove no row lost or duplicated (~1 h)"
	@echo "make smoke-cloud  the demo on real Snowflake / BigQuery, where credentials are set"
	@echo "make audit   known vulnerabilities in the locked dependencies (needs pypi.org or osv.dev)"

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# quiet: a fresh `make demo` would otherwise list every one of ~200 packages before the run
install: uv
	@echo "installing the locked dependencies into .venv …"
	@$(UV) sync --frozen --no-dev --compile-bytecode --quiet

# the tests need the Snowflake and BigQuery extras (they run against local emulators),
# and the BigQuery emulator its own environment (tests/emulators/bigquery/pyproject.toml)
install-dev: uv
	$(UV) sync --frozen --all-extras --compile-bytecode
	$(UV) sync --frozen --project tests/emulators/bigquery --compile-bytecode

demo: install
	@$(VENV)/elt demo

run: install
	$(VENV)/elt run

# work pool, per-source concurrency limits and deployments/prefect.yaml; see README "Running on a schedule"
# (no `install` first: it would drop the dev tools from a dev .venv; `make install` once)
deploy:
	$(VENV)/elt deploy

lint: install-dev
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(SQLFLUFF) lint models snapshots

format: install-dev
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .
	$(SQLFLUFF) fix models snapshots

# Two worker processes: both cores stay busy (the suite waits on servers part of the time,
# and the light crash campaign runs beside it; tests/support/light_campaign.py). A module
# stays on one worker, the modules sharing a first run go to one worker together, the
# longest start first (tests/support/scheduling.py).
PYTEST_PARALLEL := -n 2

test: lint
	$(VENV)/pytest $(PYTEST_PARALLEL)

# everything but the whole-flow runs (e2e, the emulators, the crash campaign) and the slow
# integration modules (marked `slow`)
test-fast: install-dev
	$(VENV)/pytest $(PYTEST_PARALLEL) -m "not e2e and not snowflake and not bigquery and not slow"

bench: install
	$(VENV)/python -m bench.run

# the full campaign (tests/reliability); `make test` runs its light plan
reliability: install-dev
	$(VENV)/python -m tests.reliability

smoke-cloud: uv
	$(UV) sync --frozen --no-dev --extra snowflake --extra bigquery --compile-bytecode
	$(VENV)/elt smoke-cloud

# Known vulnerabilities in every locked package (all extras, the dev tools) with pip-audit, from
# PyPI's advisory data (AUDIT_SERVICE=osv: osv.dev). It needs pypi.org's JSON API or api.osv.dev,
# so `make test` (offline) does not run it; --strict fails when a package could not be checked.
PIP_AUDIT := pip-audit==2.10.1
AUDIT_SERVICE ?= pypi
audit: uv
	@mkdir -p data
	$(UV) export --frozen --all-extras --no-hashes --no-emit-project --quiet -o data/requirements-audit.txt
	$(UV) tool run $(PIP_AUDIT) --strict --vulnerability-service $(AUDIT_SERVICE) --progress-spinner off \
		--requirement data/requirements-audit.txt --no-deps --disable-pip

clean:
	rm -rf data .pytest_cache .ruff_cache
