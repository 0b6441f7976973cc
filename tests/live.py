"""Real servers for the browser and multi-process tests: Daphne processes on the test database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx
from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """DATABASE_URL for a server process that must share this test run's database."""
    name = str(connection.settings_dict["NAME"])
    # Only ever a test database: the settings name the real one outside database tests.
    assert "test" in name.rsplit("/", 1)[-1], f"not a test database: {name} (use a django_db test)"
    if connection.vendor == "sqlite":
        return f"sqlite:///{name}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A site process: Daphne (as `make run` serves), Uvicorn, or "serve": the production command
    (`manage.py serve`, as `make serve` runs it: DEBUG off, Uvicorn with `workers` workers)."""

    def __init__(self, *, server: str = "daphne", env: dict | None = None, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        given = env or {}
        env = {**os.environ, "DJANGO_ALLOW_ASYNC_UNSAFE": "", "DATABASE_URL": test_database_url(), "DJANGO_SETTINGS_MODULE": "tests.settings",
               "PYTHONUNBUFFERED": "1", **given}
        if server == "serve":
            # DEBUG off wants the secrets set: the test run's own, so sessions and provider keys agree.
            env = {**env, "DEBUG": "0", "SECRET_KEY": settings.SECRET_KEY,
                   "CHATSITE_ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS), **given}
            command = [sys.executable, "manage.py", "serve", "--workers", str(workers), "--port", str(self.port)]
        elif server == "daphne":
            command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "chatsite.asgi:application"]
        else:
            command = [sys.executable, "-m", "uvicorn", "chatsite.asgi:application", "--host", "127.0.0.1",
                       "--port", str(self.port), "--log-level", "warning"]
        self.log = open(ROOT / "var" / f"server-{self.port}.log", "w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def start(self) -> Server:
        deadline = time.monotonic() + 100  # a deadline for a stuck server on a loaded machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not start: {self.output()}")

    def output(self) -> str:
        return self.all_output()[-3000:]

    def all_output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class LiveTab:
    """A browser tab's websocket to a site process: the session cookie and the site's Origin."""

    def __init__(self, server: Server, user, conversation_id: int):
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        self.ws = connect(f"ws://127.0.0.1:{server.port}/ws/conversations/{conversation_id}/", origin=server.url,
                          additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"}, open_timeout=20,
                          # A test reads its frames when it is ready to: they wait in an unbounded queue (with
                          # the default bound of 16 the client stops reading the socket, so the server's pongs
                          # go unread and the client closes the socket after its ping timeout, 1011).
                          max_queue=None, ping_interval=None,
                          legacy=True)  # legacy: not a context manager, it lives across a test
        self.frames: list[str] = []

    def send(self, **content) -> None:
        self.ws.send(json.dumps(content))

    def read_until(self, predicate, timeout: float = 30.0) -> list[str]:
        deadline, start = time.monotonic() + timeout, len(self.frames)
        while True:
            remaining = deadline - time.monotonic()
            try:
                frame = self.ws.recv(timeout=max(remaining, 0.001))
            except TimeoutError:
                raise AssertionError(f"no matching frame in {timeout}s; got {self.frames[start:]!r}") from None
            self.frames.append(frame)
            if predicate(frame):
                return self.frames[start:]

    def read_reply(self, status: str = "complete", timeout: float = 30.0) -> list[str]:
        return self.read_until(lambda f: f'class="message assistant {status}"' in f, timeout)

    def joined(self) -> LiveTab:
        """Once the socket's connect handler is done (it has joined the conversation's group):
        the consumer answers frames in order, so the answer to one means the connect is over."""
        self.send(action="ready?")
        self.read_until(lambda f: "unknown action" in f)
        return self

    def close(self) -> None:
        self.ws.close()
