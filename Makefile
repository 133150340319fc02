# Developer entry points. On a fresh machine with only Python 3.11+:
#   make run    create .venv, install, migrate, seed the demo, start web + Celery worker + beat
#   make test   the whole test suite (what CI runs): fast tiers on xdist, then the slow tiers
#   make test-fast  the unit and API tiers only, on 2 xdist workers (FAST_WORKERS)
# Overridable: HOST, PORT (make run), PYTEST_ARGS (make test, e.g. PYTEST_ARGS="-n 2 -x"),
# PYTHON (the interpreter that creates .venv).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first python3.1x / python3 on PATH that is at least 3.11.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	>/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
FAST_WORKERS ?= 2
# The slow tiers (markers in pyproject.toml; tests/conftest.py adds them by directory).
FAST_MARKERS := not browser and not worker and not fuzz and not reliability and not heavy and not load and not soak
SLOW_MARKERS := (browser or worker or fuzz or reliability or heavy) and not load and not soak
# JUnit XML files go here when set (CI sets it): junit-fast.xml and junit-slow.xml.
JUNIT_DIR ?=
PYTEST := DJANGO_SETTINGS_MODULE=config.settings_test $(VENV)/bin/pytest -p no:cacheprovider

.PHONY: help install run test test-fast bench lint fmt

help:
	@echo "make run    - install (first time), migrate, seed demo data, start web + worker + beat"
	@echo "              on http://$(HOST):$(PORT)/ (override with HOST=... PORT=...)"
	@echo "make test   - run the whole test suite (PYTEST_ARGS=... to pass pytest options)"
	@echo "make test-fast - unit and API tiers only (no browser, worker, fuzz, reliability, load)"
	@echo "make bench  - run bench/ and write bench/RESULTS.md"
	@echo "make lint   - ruff check, ruff format --check and the import contracts (.importlinter)"
	@echo "make fmt    - ruff format and ruff check --fix"

$(PY):
	@if [ -z "$(PYTHON)" ]; then \
		echo "Python 3.11 or newer is required (none found as python3.1x or python3)."; exit 1; fi
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)

# Reinstall only when requirements.lock changes (uv is used when present, pip otherwise).
# pip's own output stays visible (one line per package, progress bars on a terminal): a first
# install takes minutes and a silent one looks hung.
$(STAMP): requirements.lock | $(PY)
	@echo "Installing the locked dependencies into $(VENV) (first run: a few minutes) ..."
	@if command -v uv >/dev/null 2>&1; then \
		uv pip install --python $(PY) -r requirements.lock; \
	else \
		$(PY) -m pip install --disable-pip-version-check --no-input -r requirements.lock; \
	fi
	@echo "Dependencies installed."
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) scripts/dev.py --host $(HOST) --port $(PORT)

# Everything: the unit and API tiers on xdist workers, then the tiers that start browsers,
# Celery workers, servers or fuzzers, one at a time (they time real processes). Both always
# run; the exit status is the first failure's.
test: $(STAMP)
	@rc=0; \
	$(PYTEST) -m "$(FAST_MARKERS)" -n $(FAST_WORKERS) \
		$(if $(JUNIT_DIR),--junitxml=$(JUNIT_DIR)/junit-fast.xml) $(PYTEST_ARGS) || rc=$$?; \
	$(PYTEST) -m "$(SLOW_MARKERS)" \
		$(if $(JUNIT_DIR),--junitxml=$(JUNIT_DIR)/junit-slow.xml) $(PYTEST_ARGS) \
		|| { r=$$?; [ $$rc -ne 0 ] || rc=$$r; }; \
	exit $$rc

test-fast: $(STAMP)
	$(PYTEST) -m "$(FAST_MARKERS)" -n $(FAST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	@if [ -f bench/__main__.py ]; then \
		$(PY) -m bench; \
	else \
		echo "bench/__main__.py does not exist yet: nothing to run."; exit 1; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
