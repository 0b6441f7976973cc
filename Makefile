# Chatsite: `make run` serves the site, `make test` runs the whole suite.
# Both set up what they need first (idempotent): a virtual environment in .venv, and the
# embedded local model unless LOCAL_MODEL=0 (make run LOCAL_MODEL=0).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# The embedded local model (conversations/local): llama-cpp-python, which compiles from source the
# first time (6 to 9 minutes; pip caches the wheel), and the SmolLM2-135M GGUF file, installed by
# conversations/local/build.py under a lock, with its state in .venv where the site reads it.
# `make run` builds it in the background and serves at once; `make setup` (and so `make test`)
# builds it in the foreground, or waits for the build running; `make local-model` also retries a
# failed build. LOCAL_MODEL=0 skips it (make run LOCAL_MODEL=0).
LOCAL_MODEL ?= 1
export LOCAL_MODEL
local_model_on := $(filter-out 0 false no off False,$(LOCAL_MODEL))
BUILD_LOCAL := $(PY) -m conversations.local.build

# The oldest interpreter >= 3.12 found (the one the suite runs on), on PATH, then under pyenv.
PYTHON ?= $(shell for p in python3.12 python3.13 python3.14 python3 \
	$$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$p; break; }; \
	done)

.PHONY: setup run test browser lint check-python clean local-model

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
	@$(if $(local_model_on),$(BUILD_LOCAL),:)

local-model: $(STAMP)
	@$(BUILD_LOCAL) --retry

run: $(STAMP)
	@$(if $(local_model_on),$(BUILD_LOCAL) --background,:)
	@$(PY) manage.py migrate --no-input
	@echo "Chatsite is serving on http://$(HOST):$(PORT)/"
	@$(PY) manage.py runserver $(HOST):$(PORT)

# Production (README, "Running in production"): Uvicorn workers, DEBUG off; more than one worker
# needs DATABASE_URL (PostgreSQL) and REDIS_URL (conversations/management/commands/serve.py).
.PHONY: serve
WORKERS ?= 1
serve: $(STAMP)
	@DEBUG=0 $(PY) manage.py serve --workers $(WORKERS) --host $(HOST) --port $(PORT)

# Browser tests drive Debian's chromium; Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
	      || echo "chromium could not be installed: the browser tests will be skipped"; \
	  else echo "chromium is not installed (apt-get install chromium): the browser tests will be skipped"; fi; }

test: setup browser
	@$(PY) -m pytest -n 2 --dist loadgroup -rs $(PYTEST_ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var
