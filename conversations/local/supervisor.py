"""The local model's server as a child process, started with the site and stopped with it.

One server per machine and port (LOCAL_MODEL_PORT, on loopback): every web process (Uvicorn
workers, runserver's reloads, Daphne) calls `start()`, and a watcher thread in each keeps the
port answering. The first to find it silent starts a child; children bind the port before they
load the model, so when several processes race, one child wins and the others exit at once
(`server.EXIT_PORT_TAKEN`). A process stops its child at exit; the child also exits by itself
when that process dies outright (it watches its parent's pid), and then another web process's
watcher starts a new one within `CHECK_SECONDS`.

Nothing here blocks the site's start: the child loads the model (about a second) while the site
comes up; a chat sent meanwhile fails like any unreachable upstream (503) and can be regenerated.
While the model is still being built (`make run` builds it in the background, see build.py), the
watcher only reads the build's state at each check, and starts the child once it is done: the
site needs no restart.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx

from conversations import local
from conversations.local.server import EXIT_PORT_TAKEN

log = logging.getLogger("chatsite.local")

ROOT = Path(__file__).resolve().parent.parent.parent
CHECK_SECONDS = 5.0
START_TIMEOUT = 60.0
MAX_FAILURES = 3  # children that died on their own in a row: then stop trying, and say why


class Supervisor:
    def __init__(self, port: int, *, threads: int = 1, model_file: Path | None = None, name: str = local.MODEL_NAME,
                 host: str = "127.0.0.1", extra_args: tuple[str, ...] = (), check_seconds: float = CHECK_SECONDS,
                 installed: Callable[[], bool] = local.available):
        self.host, self.port, self.threads, self.name = host, port, threads, name
        self.model_file = model_file  # found when the child starts: the build may still be running
        self.installed = installed
        self.extra_args = extra_args
        self.check_seconds = check_seconds
        self.process: subprocess.Popen | None = None
        self.failures = 0
        self.warned_port_taken = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def probe(self) -> str:
        """"ours" when the port serves this model, "other" when something else answers there,
        "busy" when something listens but does not answer in time (a server loading its model),
        "" when nothing does."""
        try:
            response = httpx.get(f"{self.base_url}/models", timeout=2.0)
            ids = {m.get("id") for m in response.json().get("data") or ()}
        except httpx.ConnectError:
            return ""
        except httpx.TimeoutException:
            return "busy"
        except (httpx.HTTPError, ValueError, AttributeError):
            return "other"
        return "ours" if self.name in ids else "other"

    def serving_pid(self) -> int | None:
        """The pid of the server that answers on the port."""
        try:
            return httpx.get(f"http://{self.host}:{self.port}/health", timeout=2.0).json().get("pid")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    def owns_child(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- the watcher

    def start(self) -> Supervisor:
        """Watch the port from a daemon thread, starting a child when nothing serves it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="local-model", daemon=True)
            self._thread.start()
            atexit.register(self.stop)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> bool:
        return self._ready.wait(timeout)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("the local model's watcher failed")
            if self.failures >= MAX_FAILURES:
                log.error("the local model's server failed %s times: not starting it again (see the errors above)",
                          self.failures)
                return
            self._stop.wait(self.check_seconds)

    def check(self) -> None:
        """Once: make sure something serves the model on the port."""
        with self._lock:
            if self._stop.is_set() or not self.installed():
                return
            if self.owns_child():
                if self.probe() == "ours":
                    self._ready.set()
                return
            state = self.probe()
            if state == "ours":
                self._ready.set()
                return
            if state == "busy":
                return
            if state == "other":
                if not self.warned_port_taken:
                    log.warning("port %s answers, but not with the local model: it is not started (set LOCAL_MODEL_PORT)",
                                self.port)
                    self.warned_port_taken = True
                return
            self._ready.clear()
            self._spawn()

    def _spawn(self) -> None:
        command = [sys.executable, "-m", "conversations.local.server", "--model", str(self.model_file or local.model_file()),
                   "--name", self.name, "--host", self.host, "--port", str(self.port),
                   "--threads", str(self.threads), "--parent-pid", str(os.getpid()), *self.extra_args]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
        while time.monotonic() - started < START_TIMEOUT and not self._stop.is_set():
            code = self.process.poll()
            if code == EXIT_PORT_TAKEN:  # another process's child won the race: use that one
                self.process = None
                return
            if code is not None:
                self.failures += 1
                log.error("the local model's server exited with code %s while starting", code)
                self.process = None
                return
            if self.probe() == "ours":
                self._ready.set()
                # Else another process's child answers, and ours is about to exit (port taken).
                if self.serving_pid() == self.process.pid:
                    self.failures = 0
                    log.info("the local model %s answers on %s (pid %s, %.1f s to start)",
                             self.name, self.base_url, self.process.pid, time.monotonic() - started)
                    return
            time.sleep(0.1)
        if not self._stop.is_set():
            self.failures += 1
            log.error("the local model's server did not answer within %.0f s", START_TIMEOUT)
            self._terminate()

    # -- stopping

    def stop(self) -> None:
        """Stop watching and stop the child this process started (if any)."""
        self._stop.set()
        with self._lock:
            self._terminate()

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_supervisor: Supervisor | None = None


def start() -> Supervisor:
    """The process's supervisor for the local model, from the settings, started once."""
    global _supervisor
    from django.conf import settings

    if _supervisor is None:
        _supervisor = Supervisor(settings.LOCAL_MODEL_PORT, threads=settings.LOCAL_MODEL_THREADS,
                                 installed=lambda: local.status().ready).start()
    return _supervisor
