# Two commands on a fresh machine: `make demo` and `make test`. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test unit integration lint bench services-up services-down clean nlm-files

# The compiled parser (worker/native) is built by pip; its sources are dependencies too.
NATIVE_SOURCES := worker/native/Cargo.toml worker/native/Cargo.lock $(wildcard worker/native/src/*.rs)

$(VENV)/.installed: pyproject.toml $(NATIVE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

## install: a virtualenv in .venv with the package and its test tools
install: $(VENV)/.installed

## demo: services up, a worker, ingest of tests/data/sample.medline, counts and a search hit
demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" deploy/local/demo

## test: services up, lint, NLM's real files fetched, the whole test suite (unit and integration)
test: install services-up lint nlm-files
	MEDLINE_REQUIRE_NATIVE=1 $(PY) -m pytest

## nlm-files: two of NLM's own PubMed files (56 MB, once) for the real-data tests
nlm-files: install
	$(PY) -m tests.nlm_files

## unit: the fast tests only (no services needed)
unit: install
	MEDLINE_REQUIRE_NATIVE=1 $(PY) -m pytest tests/unit

## integration: the tests against the real Redis, Elasticsearch and worker processes
integration: install services-up
	$(PY) -m pytest tests/integration

lint: install
	$(PY) -m ruff check worker schemas tests
	$(PY) -m ruff format --check worker schemas tests

## bench: the benchmarks (minutes; print figures, never pass/fail)
bench: install services-up
	$(PY) tests/benchmarks/bench_parse.py

services-up:
	deploy/local/services up

services-down:
	deploy/local/services down

clean: services-down
	rm -rf $(VENV) .state
