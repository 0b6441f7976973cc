# Chatsite: `make run` serves the site, `make test` runs the whole suite.
# Both set up what they need first (idempotent): a virtual environment in .venv.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# The first interpreter >= 3.12 found: on PATH, then under pyenv.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3 \
	$$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$p; break; }; \
	done)

.PHONY: setup run test browser lint check-python clean

check-python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "Chatsite needs Python 3.12 or newer, and none was found on PATH or under ~/.pyenv."; \
	  echo "Install one (for example: 'pyenv install 3.12' or 'apt-get install python3.12 python3.12-venv'),"; \
	  echo "or name it: make run PYTHON=/path/to/python3.12"; \
	  exit 1; \
	fi

$(STAMP): pyproject.toml | check-python
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing Chatsite and its test tools into $(VENV)"
	@$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@$(PY) manage.py migrate --no-input
	@echo "Chatsite is serving on http://$(HOST):$(PORT)/"
	@$(PY) manage.py runserver $(HOST):$(PORT)

# Browser tests drive Debian's chromium; Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
	      || echo "chromium could not be installed: the browser tests will be skipped"; \
	  else echo "chromium is not installed (apt-get install chromium): the browser tests will be skipped"; fi; }

test: setup browser
	@$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: setup
	@$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var
