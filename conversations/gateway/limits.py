"""Rate limits and budgets, checked before the upstream is called.

They apply to two subjects: the API key a request comes with, and the member it belongs to (their
Profile, which covers the browser chat and all their keys together).

- Requests per minute: a moving window (the `limits` library), in memory or on Redis.
- Tokens per minute: a fixed one-minute window (the `limits` library) that the tokens of each
  finished request are added to; a request is admitted while the minute still has tokens left.
- Budgets (total and this month): spend is an atomic counter (micro-units of the site's currency)
  in the cache, seeded from the usage records. A request reserves its estimated cost before it
  starts, and is refused if the spend *before* its reservation had reached the budget: concurrent
  requests overspend by at most one request's worth. When it ends, the real cost replaces the
  reservation. The counters agree with the usage rows: an attempt's pending row holds the cost
  reserved for it until it is settled, also by the sweep when its process died (`reconcile`).

Limits and budgets live on Redis when REDIS_URL is set. While Redis cannot be reached, a request
that has limits or a budget is refused (fail closed: 503 with Retry-After, "limits_unavailable"),
so nobody spends past a budget unnoticed; requests without limits are served as usual. Nothing
needs a restart when Redis returns: every check opens a fresh connection from the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache as django_cache
from django.db.models import Sum
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.exceptions import RedisError

from conversations import connections
from conversations.gateway.errors import GatewayError
from conversations.models import Model, UsageRecord

MICRO = 1_000_000
RESERVED_COMPLETION_TOKENS = 1000  # assumed for the reservation when max_tokens is not given
UNAVAILABLE_RETRY_SECONDS = 5  # Retry-After while the limits' store (Redis) cannot be reached
# What a store that went away raises: redis-py's errors, the socket's own, or limits' wrapper.
STORE_ERRORS = (RedisError, OSError, StorageError)

log = logging.getLogger("chatsite.gateway")

_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_settling: set[asyncio.Task] = set()


@dataclass(frozen=True)
class Subject:
    """Something with limits: an API key, or a member."""

    kind: str  # "key" or "user"
    pk: int
    rpm: int | None
    tpm: int | None
    budget_total: Decimal | None
    budget_monthly: Decimal | None

    @property
    def whose(self) -> str:
        return "This API key's" if self.kind == "key" else "Your"

    @property
    def ident(self) -> str:
        return _ident(self.kind, self.pk)

    def records(self):
        return UsageRecord.objects.filter(**({"api_key_id": self.pk} if self.kind == "key" else {"user_id": self.pk}))


def _ident(kind: str, pk: int) -> str:
    """How a subject is named in the limits' store (rate windows and spend counters)."""
    return f"{kind}:{pk}"


def subjects_of(caller) -> list[Subject]:
    found = []
    if (key := caller.api_key) is not None:
        found.append(Subject("key", key.pk, key.rpm, key.tpm, key.budget_total, key.budget_monthly))
    if (profile := caller.profile) is not None and profile.has_limits:
        found.append(Subject("user", profile.user_id, profile.rpm, profile.tpm, profile.budget_total,
                             profile.budget_monthly))
    return found


@dataclass
class Reservation:
    micros: int  # the estimated cost reserved, in each of the counters below
    counters: list[str] = field(default_factory=list)


def _rate_limiters() -> tuple[MovingWindowRateLimiter, FixedWindowRateLimiter]:
    """Per event loop: the async Redis client cannot cross loops."""
    loop = asyncio.get_running_loop()
    if loop not in _limiters:
        if settings.REDIS_URL:
            # redis-py's asyncio client (installed with channels-redis), not limits' default coredis.
            storage = storage_from_string("async+" + settings.REDIS_URL, implementation="redispy",
                                          key_prefix=f"{settings.REDIS_PREFIX}-limits")
        else:
            storage = storage_from_string("async+memory://")
        _limiters[loop] = (MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage))
    return _limiters[loop]


def estimate_cost(model: Model, body: dict) -> Decimal:
    from conversations.gateway.usage import estimate_tokens, prompt_chars

    completion = body.get("max_completion_tokens") or body.get("max_tokens") or RESERVED_COMPLETION_TOKENS
    prompt = estimate_tokens("x" * prompt_chars(body))
    return model.cost(prompt, int(completion) * int(body.get("n") or 1))


async def admit(caller, model: Model, body: dict) -> Reservation | None:
    """Raise 429 or 402 when a subject is over a limit or budget, 503 when the limits cannot be
    checked; else reserve the cost."""
    subjects = subjects_of(caller)
    if not subjects:
        return None
    try:
        return await _admit(subjects, model, body)
    except STORE_ERRORS as exc:
        log.warning("limits not checked, the request is refused: the store is unavailable (%r)", exc)
        raise GatewayError(
            503, "Limits and budgets cannot be checked right now (their store is unavailable); "
            "try again in a few seconds.", code="limits_unavailable", retry_after=UNAVAILABLE_RETRY_SECONDS,
        ) from None


async def _admit(subjects: list[Subject], model: Model, body: dict) -> Reservation | None:
    for subject in subjects:
        await _check_rates(subject)
    budgeted = [s for s in subjects if s.budget_total is not None or s.budget_monthly is not None]
    if not budgeted:
        return None
    reservation = Reservation(max(1, math.ceil(estimate_cost(model, body) * MICRO)))
    await connections.aquery(_reserve_all, reservation, budgeted, datetime.now(UTC).strftime("%Y-%m"))
    return reservation


# The spend counters are read and written through Django's cache, whose async methods are each a
# hop to the database thread (in memory and on Redis alike; in a burst, requests queue on that
# thread for each hop they make): a reservation is one hop for all its counters (a counter not
# there is seeded from the usage rows, a query), a settlement one off that thread (no query).


def _reserve_all(reservation: Reservation, budgeted: list[Subject], month: str) -> None:
    try:
        for subject in budgeted:
            for scope, budget in (("total", subject.budget_total), (month, subject.budget_monthly)):
                if budget is not None:
                    _reserve(reservation, subject, scope, budget)
    except (GatewayError, *STORE_ERRORS):
        with contextlib.suppress(*STORE_ERRORS):
            for counter in reservation.counters:
                django_cache.decr(counter, reservation.micros)
        raise


def _reserve(reservation: Reservation, subject: Subject, scope: str, budget: Decimal) -> None:
    counter = _spend_counter(subject, scope)
    after = django_cache.incr(counter, reservation.micros)
    if after - reservation.micros >= budget * MICRO:
        django_cache.decr(counter, reservation.micros)
        which = "total" if scope == "total" else "monthly"
        raise GatewayError(402, f"{subject.whose} {which} budget of {budget:.2f} {settings.CURRENCY} is spent.",
                           code="budget_exceeded")
    reservation.counters.append(counter)


async def _check_rates(subject: Subject) -> None:
    moving, fixed = _rate_limiters()
    if subject.rpm:
        item = RateLimitItemPerMinute(subject.rpm)
        if not await moving.hit(item, "rpm", subject.ident):
            reset, _ = await moving.get_window_stats(item, "rpm", subject.ident)
            raise _rate_limited(f"{subject.whose} limit of {subject.rpm} requests per minute is reached.", reset)
    if subject.tpm:
        item = RateLimitItemPerMinute(subject.tpm)
        if not await fixed.test(item, "tpm", subject.ident):
            reset, _ = await fixed.get_window_stats(item, "tpm", subject.ident)
            raise _rate_limited(f"{subject.whose} limit of {subject.tpm} tokens per minute is reached.", reset)


def _rate_limited(message: str, reset_at: float) -> GatewayError:
    retry_after = max(1, math.ceil(reset_at - datetime.now(UTC).timestamp()))
    return GatewayError(429, message, code="rate_limit_exceeded", retry_after=retry_after)


def _counter_name(ident: str, scope: str) -> str:
    return f"spend:{ident}:{scope}"


def _spend_counter(subject: Subject, scope: str) -> str:
    """The cache key of a spend counter, seeded from the usage records when it is not there (in
    the database thread, its connection checked: connections.aquery)."""
    counter = _counter_name(subject.ident, scope)
    if django_cache.get(counter) is None:
        records = subject.records()
        if scope != "total":
            year, month = map(int, scope.split("-"))
            records = records.filter(created_at__gte=datetime(year, month, 1, tzinfo=UTC))
        spent = records.aggregate(total=Sum("cost"))["total"] or 0
        django_cache.add(counter, math.ceil(Decimal(spent) * MICRO), timeout=None)
    return counter


async def spent(subject: Subject, scope: str = "total") -> Decimal:
    """What a subject has spent (the counter, so reservations under way included)."""
    return Decimal(await connections.aquery(lambda: django_cache.get(_spend_counter(subject, scope))) or 0) / MICRO


def held(reservation: Reservation | None) -> Decimal:
    """What the next attempt's pending usage row holds in the counters."""
    return Decimal(reservation.micros) / MICRO if reservation is not None else Decimal(0)


def settle(caller, reservation: Reservation | None, record: UsageRecord) -> None:
    """After each attempt: its real cost replaces the reservation, its tokens count per minute.
    A fallback's next attempt holds nothing: the counters add up each attempt's row."""
    tpm_subjects = [s for s in subjects_of(caller) if s.tpm]
    delta, counters = 0, []
    if reservation is not None:
        cost = math.ceil(Decimal(record.cost) * MICRO)
        # Worked out here, not in the task: after a fallback the next attempt settles again.
        delta, reservation.micros, counters = cost - reservation.micros, 0, reservation.counters
    if not counters and not tpm_subjects:
        return
    task = asyncio.get_running_loop().create_task(_settle(tpm_subjects, record.total_tokens, counters, delta))
    _settling.add(task)
    task.add_done_callback(_settling.discard)


async def _settle(tpm_subjects: list[Subject], tokens: int, counters: list[str], delta: int) -> None:
    try:
        await _settle_in_store(tpm_subjects, tokens, counters, delta)
    except STORE_ERRORS as exc:
        # The usage record is written all the same; the counters are seeded from those records
        # again once their keys are gone (a Redis that restarted empty).
        log.warning("usage not added to the limits' counters: the store is unavailable (%r)", exc)


async def _settle_in_store(tpm_subjects: list[Subject], tokens: int, counters: list[str], delta: int) -> None:
    if tokens:
        _, fixed = _rate_limiters()
        for subject in tpm_subjects:
            await fixed.hit(RateLimitItemPerMinute(subject.tpm), "tpm", subject.ident, cost=tokens)
    if counters and delta:
        await _add(counters, delta)


async def _add(counters: list[str], delta: int) -> None:
    """`delta` added to each spend counter that is there; one that is not (evicted, or a Redis
    that restarted empty) is seeded from the usage rows, this one's included, when next needed."""

    def add() -> None:
        for counter in counters:
            with contextlib.suppress(ValueError):  # not there
                django_cache.incr(counter, delta)

    await sync_to_async(add, thread_sensitive=False)()  # the cache alone: not the database thread


async def reconcile(record: UsageRecord, held_cost: Decimal) -> None:
    """A row the sweep settled (its process died): its cost replaces what it held in whichever
    spend counters exist; a counter not there yet is seeded from the rows when next needed."""
    delta = math.ceil(Decimal(record.cost) * MICRO) - math.ceil(Decimal(held_cost) * MICRO)
    if not delta:
        return
    month = record.created_at.astimezone(UTC).strftime("%Y-%m")
    idents = [_ident("key", record.api_key_id)] if record.api_key_id else []
    idents += [_ident("user", record.user_id)] if record.user_id else []
    try:
        await _add([_counter_name(ident, scope) for ident in idents for scope in ("total", month)], delta)
    except STORE_ERRORS as exc:
        # As in _settle: the row is right; the counters are seeded from the rows again once
        # their keys are gone.
        log.warning("a settled row's cost not added to the limits' counters: the store is unavailable (%r)", exc)


async def settled() -> None:
    """Wait for the settlements under way (tests, shutdown)."""
    if _settling:
        await asyncio.gather(*_settling, return_exceptions=True)
