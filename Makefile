# netflix-elt: `make run` runs the whole pipeline on a local stack; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
CLI := $(VENV)/bin/netflix-elt
# make test runs test modules on this many parallel workers (most of a test's time is spent waiting on servers)
TEST_WORKERS ?= 3

.DEFAULT_GOAL := help
.PHONY: help install run airflow docs docs-serve test mutation lint typecheck up down status reset generate bench bench-generate bench-upload bench-dag lock clean smoke-snowflake

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium (tests/test_report.py renders the HTML report in it, headless)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium with apt-get: tests/test_report.py will skip its browser check"; \
	  else \
	    echo "chromium is not installed and cannot be installed here (needs apt-get and root): tests/test_report.py" \
	      "will skip its browser check; install it with your package manager (e.g. sudo apt-get install chromium)"; \
	  fi; }
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the locked dependencies

run: install ## start the local stack and run the whole pipeline (the Airflow DAG, once), then print a summary
	$(CLI) run

airflow: install ## the Airflow UI on 127.0.0.1 (NETFLIX_ELT_AIRFLOW_PORT, default 8480) with the DAG; Ctrl-C stops it
	$(CLI) airflow

docs: install ## dbt docs of netflix_dbt into netflix_dbt/target (SERVE=1: then serve them on 127.0.0.1:8580)
	$(CLI) docs $(if $(SERVE),--serve)

docs-serve: install ## dbt docs, served on 127.0.0.1 (NETFLIX_ELT_DOCS_PORT, default 8580); Ctrl-C stops it
	$(CLI) docs --serve

up: install ## start the local S3 server and Snowflake emulator
	$(CLI) up

down: ## stop the local stack (keeps its state in .stack/)
	@if [ -x $(CLI) ]; then $(CLI) down; fi

status: install ## show the local stack
	$(CLI) status

reset: install ## stop the local stack and delete its state
	$(CLI) reset

generate: install ## write synthetic MovieLens files into data/generated (SCALE=small|...)
	$(CLI) generate --scale $(or $(SCALE),small)

lint: install ## ruff (lint + format check) and the secret scanner (detect-secrets, against .secrets.baseline)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	git ls-files -z | xargs -0 $(VENV)/bin/detect-secrets-hook --baseline .secrets.baseline

typecheck: install ## mypy
	$(VENV)/bin/mypy netflix_elt snowflake/emulator snowflake/procedures uploader

test: install lint typecheck ## install, lint, type-check and run every test (tests start the servers they need; TEST_WORKERS=3 in parallel)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

mutation: install ## break the code on purpose (tests/mutation/mutations.toml), each break in a scratch copy: its tests must fail (QUICK=1: not the slow ones; ONLY="id ...")
	$(PY) tests/mutation/run.py $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

bench: install ## upload, load, incremental CALLs, dbt and the DAG against their baselines (SCALE=medium; SCALE=ml-32m for the full size)
	$(PY) benchmarks/bench.py --scale $(or $(SCALE),medium)

bench-generate: install ## generator benchmark (SCALE=ml-32m by default)
	$(PY) benchmarks/generate_bench.py --scale $(or $(SCALE),ml-32m)

bench-upload: install ## uploader memory/throughput benchmark on a ~1 GB file
	$(PY) benchmarks/upload_memory.py

bench-dag: install ## the Airflow DAG run vs the same steps run directly, 2 rounds (SCALE=small by default)
	$(PY) benchmarks/dag_vs_direct.py --scale $(or $(SCALE),small)

smoke-snowflake: install ## certify the whole pipeline on your Snowflake account in a throwaway database (skips without SNOWFLAKE_ACCOUNT)
	$(CLI) certify

lock: ## re-resolve requirements.lock from pyproject.toml
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet "uv==0.13.9"; }
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements.lock

clean: down ## remove the venv, local state and generated data
	rm -rf $(VENV) .stack data .pytest_cache .mypy_cache .ruff_cache
