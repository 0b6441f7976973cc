"""A server process's life: nothing starts at import, the lifespan starts what runs beside the
requests, and the production command refuses what it cannot serve."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from conversations import lifecycle
from conversations.models import Message
from tests import live
from tests.live import ROOT, free_port
from tests.wsclient import Tab

LIFESPAN = """
import asyncio, json, threading
import chatsite.asgi
from conversations.chat import sweeper
from conversations.local import supervisor

def running():
    return {"local_model": supervisor._supervisor is not None and any(t.name == "local-model" for t in threading.enumerate()),
            "sweep": any(not task.done() for task in sweeper._tasks.values())}

async def main():
    seen = {"import": running()}
    messages = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})

    async def send(message):
        if message["type"] == "lifespan.startup.complete":
            seen["startup"] = running()
            await messages.put({"type": "lifespan.shutdown"})

    await chatsite.asgi.application({"type": "lifespan"}, messages.get, send)
    seen["shutdown"] = running()
    print(json.dumps(seen))

asyncio.run(main())
"""


def run(args: list[str], **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **{k: v for k, v in env.items() if v}}
    for name in ("DATABASE_URL", "REDIS_URL"):
        if env.get(name) is None:
            environment.pop(name, None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.django_db(transaction=True)
def test_importing_the_site_starts_nothing_and_its_lifespan_starts_the_local_model_and_the_sweep():
    # The model's server would bind this port if it started: a free one, never the shared default.
    done = run(["-c", LIFESPAN], DJANGO_SETTINGS_MODULE="tests.local_model_settings", LOCAL_MODEL_PORT=str(free_port()),
               LOCAL_MODEL_THREADS="1", DATABASE_URL=live.test_database_url())
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["import"] == {"local_model": False, "sweep": False}
    assert seen["startup"] == {"local_model": True, "sweep": True}
    assert seen["shutdown"]["sweep"] is False


def production(*args: str, **env) -> subprocess.CompletedProcess:
    secrets = {"SECRET_KEY": settings.SECRET_KEY, "CHATSITE_ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS)}
    return run(["manage.py", "serve", *args], **{"DEBUG": "0", **secrets, **env})


def test_the_production_server_refuses_several_workers_without_postgresql_and_redis():
    refused = production("--workers", "2")
    assert refused.returncode == 1
    assert "2 workers need a database and a Redis they all share; set DATABASE_URL" in refused.stderr
    assert "REDIS_URL" in refused.stderr

    only_redis = production("--workers", "2", REDIS_URL="redis://127.0.0.1:6379/0")
    assert only_redis.returncode == 1 and "set DATABASE_URL" in only_redis.stderr
    assert "REDIS_URL (" not in only_redis.stderr


def test_the_production_server_refuses_debug():
    refused = production("--workers", "1", DEBUG="1")
    assert refused.returncode == 1 and "DEBUG is on" in refused.stderr


@pytest.fixture
def draining(monkeypatch):
    """This process as it is after SIGTERM (conversations.lifecycle.begin_draining)."""
    monkeypatch.setattr(lifecycle, "_draining_since", time.monotonic())


@pytest.mark.django_db(transaction=True)
async def test_a_process_shutting_down_takes_no_new_reply_and_says_so(alice, conversation, draining):
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message="are you there?")
    frames = await tab.read_until(lambda frame: "restarting" in frame)
    assert lifecycle.RESTARTING in html.unescape(frames[-1])
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await tab.close()
