"""Start-up and shutdown of a server process.

Nothing starts at import. `start()` starts what a serving process runs beside its requests: the
sweep for replies a dead process left (conversations.chat.sweeper) and the local model's
supervisor (conversations.local). Under Uvicorn (`make serve`) it runs at the ASGI lifespan's
startup; Daphne's runserver (`make run`) sends no lifespan events, so chatsite/asgi.py calls it
on the process's first request or websocket instead (the same once-per-process call).

Graceful restart (Uvicorn): on SIGTERM the process stops taking new replies (Uvicorn closes its
listening socket and the websockets, which reconnect to another process; a chat action that still
arrives gets `RESTARTING`), lets the replies it is writing finish for up to
CHAT_SHUTDOWN_GRACE_SECONDS from the signal, then saves the rest as interrupted (their text kept)
and writes the queued usage rows. /v1 streams are waited for by Uvicorn itself, for the same
grace (`--timeout-graceful-shutdown`, set by `make serve`); a stream still open then is
cancelled, and its usage row settled as cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time

from django.conf import settings

from conversations import local
from conversations.chat import sweeper
from conversations.chat.replies import RUNNING
from conversations.gateway import usage
from conversations.observability import metrics

log = logging.getLogger("chatsite")

SWITCH_INTERVAL_SECONDS = 0.0005
RESTARTING = "This server is restarting: your message was not sent. Send it again in a moment."

_started = False
_draining_since: float | None = None


def start() -> None:
    """Once per process, from its event loop."""
    global _started
    if _started:
        return
    _started = True
    # Every query of the websockets and replies runs on one database thread, beside the event
    # loop's: after each query it waits for the loop's thread to let go of the GIL, which by
    # default happens every 5 ms, so a busy loop made every query of the chat cost 5 ms and a
    # message's queries queue behind each other's (scripts/bench_capacity.py's profile).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    sweeper.ensure_running()  # what an earlier run of the site left behind, at once
    local.start()


def draining() -> bool:
    """True once this process is shutting down: it takes no new replies."""
    return _draining_since is not None


def begin_draining() -> None:
    global _draining_since
    if _draining_since is None:
        _draining_since = time.monotonic()
        log.info("shutting down: no new replies; %d being written get up to %.0f s to finish",
                 len(RUNNING), settings.CHAT_SHUTDOWN_GRACE_SECONDS)


def _hear_sigterm() -> None:
    """Start draining the moment SIGTERM arrives, before Uvicorn's own handler (called next)
    begins its shutdown: the grace period counts from the signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        begin_draining()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


async def shutdown() -> None:
    """Running replies finish within the grace period, the rest are saved as interrupted, and
    queued usage is written."""
    begin_draining()
    await sweeper.stop()
    tasks = [reply.task for reply in list(RUNNING.values()) if reply.task and not reply.task.done()]
    if tasks:
        left = settings.CHAT_SHUTDOWN_GRACE_SECONDS - (time.monotonic() - _draining_since)
        _, unfinished = await asyncio.wait(tasks, timeout=max(left, 0.0))
        if unfinished:
            log.info("shutting down: %d replies saved as interrupted", len(unfinished))
        for task in unfinished:
            task.cancel()  # the reply saves its text as interrupted (replies.Reply._run)
        await asyncio.gather(*unfinished, return_exceptions=True)
    await usage.flush()
    metrics.process_exiting()


async def lifespan(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            start()
            _hear_sigterm()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await shutdown()
            except Exception:
                log.exception("shutdown did not complete")
            await send({"type": "lifespan.shutdown.complete"})
            return
