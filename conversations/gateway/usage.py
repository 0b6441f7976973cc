"""Usage accounting: a meter per request, and records written in batches off the request path.

Records are queued in memory and bulk-inserted within a second (`USAGE_FLUSH_SECONDS`), and at
shutdown (asgi lifespan, or atexit), so that no request waits on a database insert.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from conversations.models import UsageRecord

log = logging.getLogger("chatsite.usage")

_pending: list[UsageRecord] = []
_flusher: asyncio.Task | None = None


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token), for upstreams that send no usage."""
    return math.ceil(len(text) / 4) if text else 0


def prompt_chars(body: dict) -> int:
    """The characters of text in a request's messages (for estimates)."""
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(part.get("text") or "")) for part in content if isinstance(part, dict))
    return total


@dataclass
class Meter:
    """Watches one upstream call: time to first token, text produced, the usage it reports."""

    prompt_chars: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    completion_chars: int = 0
    usage: dict | None = None

    def observe(self, chunk: dict) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            text = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or ():
                text += str((call.get("function") or {}).get("arguments") or "")
            if text:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.completion_chars += len(text)

    def tokens(self) -> tuple[int, int, int, bool]:
        """(prompt, completion, reasoning, estimated)"""
        if self.usage:
            details = self.usage.get("completion_tokens_details") or {}
            return (
                int(self.usage.get("prompt_tokens") or 0),
                int(self.usage.get("completion_tokens") or 0),
                int(details.get("reasoning_tokens") or 0),
                False,
            )
        return math.ceil(self.prompt_chars / 4), math.ceil(self.completion_chars / 4), 0, True

    def record(self, **fields) -> UsageRecord:
        prompt, completion, reasoning, estimated = self.tokens()
        model = fields.get("model")
        now = time.perf_counter()
        return UsageRecord(
            prompt_tokens=prompt,
            completion_tokens=completion,
            reasoning_tokens=reasoning,
            estimated=estimated,
            cost=model.cost(prompt, completion) if model else 0,
            ttft_ms=round((self.first_token_at - self.started) * 1000) if self.first_token_at else None,
            duration_ms=round((now - self.started) * 1000),
            **fields,
        )


def record(usage: UsageRecord) -> None:
    """Queue a record; it is written within USAGE_FLUSH_SECONDS."""
    global _flusher
    _pending.append(usage)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush_sync()
        return
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not loop:
        _flusher = loop.create_task(_flush_soon())


async def _flush_soon() -> None:
    await asyncio.sleep(settings.USAGE_FLUSH_SECONDS)
    await flush()


async def flush() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(flush_sync)()


def flush_sync() -> None:
    batch = _pending[:]
    del _pending[: len(batch)]
    if not batch:
        return
    # What request_finished does for a page: drop a broken or expired connection first (the /v1
    # handler sends no such signals; this thread's queries are these inserts).
    close_old_connections()
    try:
        UsageRecord.objects.bulk_create(batch)
    except Exception:
        # One bad row (its user deleted meanwhile, say) must not cost the others: one at a time.
        for item in batch:
            try:
                item.save(force_insert=True)
            except Exception:
                log.exception("could not write usage record %s", item.request_id)


def discard_pending() -> None:
    """Forget queued records (tests: each starts with none queued)."""
    _pending.clear()


atexit.register(flush_sync)
