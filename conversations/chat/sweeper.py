"""The sweep for what a process that died left behind, run by every site process.

A reply left "streaming" (not saved for CHAT_STALE_SECONDS) is marked interrupted, keeping its
text, and every tab on the conversation, on any process, gets the final message; a usage row left
pending (no heartbeat for CHAT_STALE_SECONDS) is settled and the spend counters reconciled
(conversations.gateway.usage.settle_dead). It runs every third of CHAT_STALE_SECONDS, started
with the site under Uvicorn (the ASGI lifespan) and otherwise, as under Daphne and runserver
(which have no lifespan), by the first tab or reply of a process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings

from conversations.chat.replies import interrupt_stale
from conversations.gateway import limits, usage

log = logging.getLogger("chatsite.chat")

_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def ensure_running() -> None:
    """Start this process's sweep on the running event loop, unless it runs already."""
    loop = asyncio.get_running_loop()
    task = _tasks.get(loop)
    if task is None or task.done():
        _tasks[loop] = loop.create_task(_sweep_regularly(), name="chatsite-sweep")


async def stop() -> None:
    task = _tasks.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _sweep_regularly() -> None:
    while True:
        try:
            await sweep()
        except Exception:  # a database or Redis hiccup: the next round tries again
            log.warning("the sweep for dead replies failed", exc_info=True)
        await asyncio.sleep(settings.CHAT_STALE_SECONDS / 3)


async def sweep() -> None:
    await interrupt_stale()
    for record, held in await sync_to_async(usage.settle_dead)():
        await limits.reconcile(record, held)
