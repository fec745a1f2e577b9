# `make demo` and `make test` work on a fresh clone: each sets up what it needs, then runs.
#   .venv/         Python virtual environment (requirements.txt + requirements-dev.txt), with the
#                  checkout installed editable for the `backupwarden` console script (pyproject.toml);
#                  .venv/py3.12/ the same for `PYTHON=python3.12`
#   node_modules/  Azurite, the Azure Storage emulator, and the Kusto language service, the KQL
#                  analyser of tests/test_kql_analysis.py (package.json + package-lock.json)
#   .venv-iac/     checkov, the IaC scanner tests/test_infra.py runs on infra/ (requirements-iac.txt);
#                  its own environment because checkov pins a `packaging` that pytest cannot share
#   chromium       Debian's headless browser, which tests/test_coverage_html.py opens the coverage page
#                  in (apt-get, with sudo when not root); nothing to do when `chromium` is on PATH
# Each is rebuilt only when its requirement files change (stamp files).

SHELL := /bin/bash
.DEFAULT_GOAL := test

# The interpreter: `make test PYTHON=python3.12` runs the suite on 3.12 (Flex Consumption runs 3.11 and
# 3.12). Each minor version gets its own environment, so switching never reuses the other's packages:
# .venv for 3.11, .venv/py3.12 for 3.12 (inside .venv/, which git and the deployment already leave out).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV := $(if $(filter 3.11,$(PYTHON_VERSION)),.venv,.venv/py$(PYTHON_VERSION))
VENV_PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
NODE_STAMP := node_modules/.package-lock-installed
IAC_VENV := .venv-iac
IAC_STAMP := $(IAC_VENV)/.requirements-installed
# Two test processes (pytest-xdist), whole modules to each so module fixtures are built once: on this
# 2-core machine the suite took 545 s in one process and 295 s in two (docs/benchmarks.md, "The suite").
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: venv node_modules iac browser deps demo test lint

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON_VERSION)" || { echo "make: no Python at '$(PYTHON)' (python3.11 or python3 is required)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' \
		|| { echo "make: $(PYTHON) is Python $(PYTHON_VERSION); backupwarden runs on 3.11 and 3.12" >&2; exit 1; }
	test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	$(VENV_PYTHON) -m pip install --disable-pip-version-check --quiet --no-deps -e .
	touch $@

node_modules: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

iac: $(IAC_STAMP)

$(IAC_STAMP): requirements-iac.txt
	@test -n "$(PYTHON)" || { echo "make: python3.11 or python3 is required" >&2; exit 1; }
	test -x $(IAC_VENV)/bin/python || $(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --disable-pip-version-check --quiet -r requirements-iac.txt
	touch $@

browser:
	@if command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
	else echo "make: chromium is missing and installing it needs root or sudo (apt-get install chromium)" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "make: chromium is missing and there is no apt-get to install it with" >&2; exit 1; }; \
	set -x; $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

deps: venv node_modules

demo: deps
	$(VENV_PYTHON) -m backupwarden demo

test: deps iac browser
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m mypy
	$(VENV)/bin/lint-imports
