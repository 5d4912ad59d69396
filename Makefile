# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint serve server deploy worker

setup:
	@bash scripts/setup.sh

## make demo: set up, then run the pipeline flow (preset configs/pipelines/demo.yaml) end to end on the packaged
## Wikipedia summaries, in ephemeral mode (no server needed); a second run finds every stage cached
demo: setup
	$(PY) -m flows.demo

## make serve: the Prefect server and UI on http://127.0.0.1:4200 (SQLite), the bertplat work pool, every
## deployment of prefect.yaml and a worker, in one command; Ctrl+C stops them all (SERVE_ARGS: e.g. --port 4300)
serve: setup
	$(VENV)/bin/bertplat serve $(SERVE_ARGS)

## make test: set up, then run the whole test suite (what CI runs)
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## make test-fast: skip the slow tests
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check bertplat flows tests benchmarks

## make server: start a local Prefect server with its UI on http://127.0.0.1:4200
server: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200

# deploy and worker talk to the server of make server unless PREFECT_API_URL names another
deploy worker: export PREFECT_API_URL ?= http://127.0.0.1:4200/api

## make deploy: register the deployments of prefect.yaml with the Prefect server at PREFECT_API_URL
deploy: setup
	$(VENV)/bin/prefect work-pool inspect bertplat >/dev/null 2>&1 || $(VENV)/bin/prefect work-pool create bertplat --type process
	$(VENV)/bin/prefect --no-prompt deploy $$($(PY) -m bertplat.serve)

## make worker: a process worker for the bertplat pool, run from this clone: prefect.yaml's pull step
## moves each flow run into the worker's $$PWD, this clone, so its flows/ and ./data are the ones used
worker: setup
	PWD="$(CURDIR)" PREFECT_LOGGING_EXTRA_LOGGERS=bertplat $(VENV)/bin/prefect worker start --pool bertplat
