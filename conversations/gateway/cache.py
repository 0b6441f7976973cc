"""Per-process caches for what every gateway request looks up: keys, models, templates.

The hot path does no database round trip it can avoid. Entries live `GATEWAY_CACHE_SECONDS`
(2 s by default), at most `MAX_ENTRIES` per cache (cachetools), and are dropped at once in this
process when an admin changes a key, model, provider, template, user or group; other processes
see the change within those seconds (the documented bound for N processes).

A miss is loaded once however many requests ask for it meanwhile (`aget_or_load`): when an entry
expires under a burst, the burst's requests would otherwise each make the same queries, one after
the other on the database's one thread (scripts/bench_gateway.py's 100 simultaneous streams: every
burst came after the 2 s had passed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from cachetools import TLRUCache
from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save

_MISSING = object()
# The bound on each cache: a flood of unknown keys evicts the least recently used entries
# instead of growing the process (a few hundred bytes an entry: a few MB at most).
MAX_ENTRIES = 10_000


class TTLCache(TLRUCache):
    """cachetools' time-aware LRU cache, each entry living GATEWAY_CACHE_SECONDS as the setting
    reads when it is stored (0: nothing is kept)."""

    def __init__(self, maxsize: int = MAX_ENTRIES):
        super().__init__(maxsize, ttu=lambda key, value, now: now + settings.GATEWAY_CACHE_SECONDS,
                         timer=time.monotonic)

    def get(self, key, default=_MISSING):
        return super().get(key, default)

    def set(self, key, value) -> None:
        self[key] = value


api_keys = TTLCache()  # prefix -> ApiKey (owner and allowed model ids loaded) or None
routes = TTLCache()  # (user id, model name) -> Model or a GatewayError
templates = TTLCache()  # name or uuid -> PromptTemplate or None

MISSING = _MISSING

# Loads under way: (event loop, cache, key) -> the task that loads it. A load that a change
# overtook (clear_all) is answered to those who asked before the change, and not kept.
_loading: dict[tuple, asyncio.Task] = {}
_generation = 0


async def aget_or_load(cache: TTLCache, key, load: Callable[[], Awaitable]):
    """The entry for `key`, else what `load()` returns, stored; concurrent misses share one load."""
    value = cache.get(key)
    if value is not _MISSING:
        return value
    loop = asyncio.get_running_loop()
    slot = (loop, id(cache), key)
    task = _loading.get(slot)
    if task is None:
        task = _loading[slot] = loop.create_task(_load(cache, key, load, _generation))
        task.add_done_callback(lambda done: _loading.pop(slot) if _loading.get(slot) is done else None)
    # Shielded: one caller going away (a client that disconnects) does not cancel the others' load.
    return await asyncio.shield(task)


async def _load(cache: TTLCache, key, load: Callable[[], Awaitable], generation: int):
    value = await load()
    if generation == _generation:
        cache.set(key, value)
    return value


def clear_all(**kwargs) -> None:
    global _generation
    _generation += 1
    _loading.clear()
    for cache in (api_keys, routes, templates):
        cache.clear()


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from conversations.models import ApiKey, Model, PromptTemplate, Provider

    for model in (ApiKey, Model, Provider, PromptTemplate, get_user_model(), Group):
        post_save.connect(clear_all, sender=model, dispatch_uid=f"gateway-cache-save-{model.__name__}")
        post_delete.connect(clear_all, sender=model, dispatch_uid=f"gateway-cache-delete-{model.__name__}")
    m2m_changed.connect(clear_all, dispatch_uid="gateway-cache-m2m")
