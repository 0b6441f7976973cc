"""Start-up and shutdown of a server process (the ASGI lifespan protocol, under Uvicorn)."""

from __future__ import annotations

import asyncio
import logging

from conversations.chat import sweeper
from conversations.chat.replies import RUNNING
from conversations.gateway import usage

log = logging.getLogger("chatsite")


async def shutdown() -> None:
    """Replies still being written are saved as interrupted, and queued usage is written."""
    await sweeper.stop()
    tasks = [reply.task for reply in list(RUNNING.values()) if reply.task]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await usage.flush()


async def lifespan(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            sweeper.ensure_running()  # what an earlier run of the site left behind, at once
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await shutdown()
            except Exception:
                log.exception("shutdown did not complete")
            await send({"type": "lifespan.shutdown.complete"})
            return
