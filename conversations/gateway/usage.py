"""Usage accounting: a meter per request, and a usage row from its start to its end.

Each upstream attempt has a row from the start: `begin()` queues it as "pending" (holding the cost
reserved for it, see limits), `settle()` gives it its outcome ("ok", "error", "truncated",
"cancelled"). No request waits on the database: a writer task of the process inserts and updates
rows in batches, within `USAGE_FLUSH_SECONDS` (and at shutdown, asgi lifespan or atexit), so a
row is usually written while its upstream call is still under way, and a short one is inserted
already settled.

While a row is open, the writer refreshes its `updated_at` (and the completion tokens so far)
every third of `CHAT_STALE_SECONDS`: that is the heartbeat of the process that owns it. A pending
row not heard from for `CHAT_STALE_SECONDS` belongs to a process that died (`kill -9`, OOM, a
lost machine); `settle_dead()` (run by the sweep, conversations.chat.sweeper) settles it as
"interrupted", billing the text that chat reply saved, or for /v1 the tokens of its last
heartbeat. A process killed within `USAGE_FLUSH_SECONDS` of a request's start leaves no row.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from conversations import connections
from conversations.models import Message, UsageRecord
from conversations.observability import logs, metrics

log = logging.getLogger("chatsite.usage")

PENDING, INTERRUPTED = "pending", "interrupted"
INTERRUPTED_ERROR = "The server process stopped during this request; billed for what it had made by then."
# What a settlement writes over the pending row.
OUTCOME_FIELDS = ["prompt_tokens", "completion_tokens", "reasoning_tokens", "estimated", "cost", "ttft_ms",
                  "duration_ms", "status", "error", "updated_at"]


@dataclass(eq=False)
class Entry:
    """One attempt's usage row, as this process knows it. The row itself is built by the writer,
    off the request path (a model instance costs tens of microseconds)."""

    fields: dict
    meter: Meter
    held: Decimal
    created_at: datetime = field(default_factory=timezone.now)
    final: UsageRecord | None = None  # set once, by settle()
    pk: int | None = None  # once inserted
    written: UsageRecord | None = None  # the version that was inserted

    def pending_row(self) -> UsageRecord:
        prompt, completion, _, _ = self.meter.tokens()
        return UsageRecord(prompt_tokens=prompt, completion_tokens=completion, estimated=True, cost=self.held,
                           status=PENDING, created_at=self.created_at, updated_at=timezone.now(), **self.fields)


_new: list[Entry] = []  # to insert
_settled: list[Entry] = []  # to update, if inserted before they were settled
_open: set[Entry] = set()  # not settled yet: their heartbeat is ours to keep
_lock = threading.Lock()  # one flush at a time: inserts land before the updates of the same rows
_writers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
_last_heartbeat = 0.0


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


def begin(meter: Meter, *, held: Decimal = Decimal(0), **fields) -> Entry:
    """Start an attempt's row (pending); it is inserted within USAGE_FLUSH_SECONDS. `held` is the
    cost reserved for it in the spend counters, so that counters and rows agree while it runs."""
    entry = Entry(fields, meter, held)
    _new.append(entry)
    _open.add(entry)
    _queue_changed()
    _ensure_writer()
    return entry


def settle(entry: Entry, final: UsageRecord, *, error_kind: str = "") -> None:
    """The attempt's outcome; written over its pending row (or inserted, if that is not yet).
    Also where both front doors' metrics and the reply's log line come from: `error_kind` names
    a failed upstream call's kind (conversations.observability)."""
    final.created_at = entry.created_at
    final.updated_at = timezone.now()
    entry.final = final  # one assignment: a flush in another thread sees all of it or none
    _open.discard(entry)
    _settled.append(entry)
    _queue_changed()
    _ensure_writer()
    logs.attempt_settled(final, error_kind)


def _queue_changed() -> None:
    metrics.USAGE_QUEUE.set(len(_new) + len(_settled))


def _ensure_writer() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush_sync()
        return
    writer = _writers.get(loop)
    if writer is None or writer.done():
        for old in [other for other, task in _writers.items() if task.done() or other.is_closed()]:
            del _writers[old]
        _writers[loop] = loop.create_task(_write_while_busy())


async def _write_while_busy() -> None:
    """Flush every USAGE_FLUSH_SECONDS while there is something to write or a row to keep alive."""
    while True:
        await asyncio.sleep(settings.USAGE_FLUSH_SECONDS)
        if _new or _settled or (_open and time.monotonic() - _last_heartbeat >= heartbeat_seconds()):
            await flush()
        if not (_new or _settled or _open):
            return


def heartbeat_seconds() -> float:
    return settings.CHAT_STALE_SECONDS / 3


async def flush() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(flush_sync)()


def flush_sync() -> None:
    with _lock:
        inserts, updates = _take(_new), _take(_settled)
        _queue_changed()
        if not (inserts or updates or _open):
            return
        # The connection is kept (conversations.connections): checked before these writes, and
        # replaced if it died (a database restart) rather than losing the batch.
        connections.check_here()
        connections.forget_if_broken()
        inserts += [e for e in updates if e.pk is None and e not in inserts]  # an insert that failed before
        _insert(inserts)
        _update([e for e in updates if e.pk is not None and e.written is not e.final])
        if _open and time.monotonic() - _last_heartbeat >= heartbeat_seconds():
            _heartbeat()


def _take(queue: list[Entry]) -> list[Entry]:
    batch = queue[:]
    del queue[: len(batch)]
    return batch


def _insert(entries: list[Entry]) -> None:
    if not entries:
        return
    versions = [e.final or e.pending_row() for e in entries]  # each read once: settle() may run meanwhile
    try:
        UsageRecord.objects.bulk_create(versions)
    except Exception:
        # One bad row (its user deleted meanwhile, say) must not cost the others: one at a time.
        for version in versions:
            try:
                version.pk = None
                version.save(force_insert=True)
            except Exception:
                log.exception("could not write usage record %s", version.request_id)
    for entry, version in zip(entries, versions, strict=True):
        entry.pk, entry.written = version.pk, version
        if version.pk is None:
            _open.discard(entry)  # never written: nothing to keep alive


def _update(entries: list[Entry]) -> None:
    for entry in entries:
        final = entry.final
        try:
            UsageRecord.objects.filter(pk=entry.pk).update(**{name: getattr(final, name) for name in OUTCOME_FIELDS})
        except Exception:
            log.exception("could not settle usage record %s", final.request_id)
        entry.written = final


def _heartbeat() -> None:
    """Our open rows are alive: updated_at now, with the completion tokens so far."""
    global _last_heartbeat
    alive = [e for e in list(_open) if e.pk is not None and e.final is None]
    _last_heartbeat = time.monotonic()
    for start in range(0, len(alive), 300):  # bounded statements (SQLite's limit on parameters)
        batch = alive[start:start + 300]
        so_far = Case(*[When(pk=e.pk, then=Value(e.meter.tokens()[1])) for e in batch], output_field=IntegerField())
        try:
            UsageRecord.objects.filter(pk__in=[e.pk for e in batch], status=PENDING).update(
                updated_at=timezone.now(), completion_tokens=so_far)
        except Exception:
            log.exception("could not refresh %d pending usage records", len(batch))


def settle_dead() -> list[tuple[UsageRecord, Decimal]]:
    """Settle the pending rows of processes that died (no heartbeat for CHAT_STALE_SECONDS) as
    "interrupted": a chat reply billed for the text it saved, a /v1 request for the tokens of its
    last heartbeat. Returns each settled row with its cost before (what it held in the counters)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.CHAT_STALE_SECONDS)
    settled = []
    for row in UsageRecord.objects.filter(status=PENDING, updated_at__lt=cutoff).select_related("model")[:500]:
        held = row.cost
        completion = row.completion_tokens
        if text := _saved_reply_text(row):
            completion = estimate_tokens(text)
        cost = row.model.cost(row.prompt_tokens, completion) if row.model else Decimal(0)
        duration = max(0, round((row.updated_at - row.created_at).total_seconds() * 1000))
        claimed = UsageRecord.objects.filter(pk=row.pk, status=PENDING).update(
            status=INTERRUPTED, error=INTERRUPTED_ERROR, completion_tokens=completion, cost=cost, estimated=True,
            duration_ms=duration, updated_at=now)
        if claimed:  # not settled meanwhile by its process or another sweep
            row.status, row.completion_tokens, row.cost = INTERRUPTED, completion, cost
            settled.append((row, held))
    return settled


def _saved_reply_text(row: UsageRecord) -> str:
    """The text a chat reply saved (chat rows group usage by "conversation-<id>")."""
    prefix = "conversation-"
    if row.source != UsageRecord.Source.CHAT or not row.session_id.startswith(prefix):
        return ""
    conversation_id = row.session_id[len(prefix):]
    if not conversation_id.isdigit():
        return ""
    saved = (Message.objects.filter(conversation_id=int(conversation_id), request_id=row.request_id)
             .values_list("content", "reasoning").first())
    return "".join(saved) if saved else ""


def discard_pending() -> None:
    """Forget queued rows (tests: each starts with none queued)."""
    _new.clear()
    _settled.clear()
    _open.clear()


atexit.register(flush_sync)
