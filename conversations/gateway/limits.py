"""Rate limits and budgets of API keys, checked before the upstream is called.

- Requests per minute: a moving window (the `limits` library), in memory or on Redis.
- Tokens per minute: a fixed one-minute window the tokens of each finished request are added to;
  a request is admitted while the current minute still has tokens left.
- Budgets (total and this month): spend is kept as an atomic counter (micro-units of the site's
  currency) in the cache, seeded from the usage records. A request reserves its estimated cost
  before it starts and is refused if the spend *before* its reservation had reached the budget,
  so concurrent requests overspend by at most one request's worth; when it ends, the reservation
  is replaced by the real cost.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db.models import Sum
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string

from conversations.gateway.errors import GatewayError
from conversations.models import ApiKey, Model, UsageRecord

MICRO = 1_000_000
RESERVED_COMPLETION_TOKENS = 1000  # assumed for the reservation when max_tokens is not given

_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rate_limiters() -> tuple[MovingWindowRateLimiter, FixedWindowRateLimiter]:
    """Per event loop: the async Redis client cannot cross loops."""
    loop = asyncio.get_running_loop()
    if loop not in _limiters:
        uri = ("async+" + settings.REDIS_URL) if settings.REDIS_URL else "async+memory://"
        options = {"key_prefix": f"{settings.REDIS_PREFIX}-limits"} if settings.REDIS_URL else {}
        storage = storage_from_string(uri, **options)
        _limiters[loop] = (MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage))
    return _limiters[loop]


@dataclass
class Reservation:
    api_key: ApiKey
    micros: int  # the estimated cost reserved
    month: str


def estimate_cost(model: Model, body: dict, prompt_tokens: int) -> Decimal:
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or RESERVED_COMPLETION_TOKENS
    return model.cost(prompt_tokens, int(completion) * int(body.get("n") or 1))


async def admit(caller, model: Model, body: dict) -> Reservation | None:
    """Raise 429 or 402 if the caller's key is over a limit or budget; else reserve the cost."""
    key = caller.api_key
    if key is None:
        return None
    if key.rpm or key.tpm:
        await _check_rates(key)
    if key.budget_total is None and key.budget_monthly is None:
        return None
    from conversations.gateway.usage import estimate_tokens, prompt_chars

    cost = estimate_cost(model, body, estimate_tokens("x" * prompt_chars(body)))
    micros = max(1, math.ceil(cost * MICRO))
    month = datetime.now(UTC).strftime("%Y-%m")
    for scope, budget in (("total", key.budget_total), (month, key.budget_monthly)):
        if budget is None:
            continue
        counter = await _spend_counter(key, scope)
        after = await django_cache.aincr(counter, micros)
        if after - micros >= budget * MICRO:
            await django_cache.adecr(counter, micros)
            if scope != "total" and key.budget_total is not None:  # undo the total's reservation too
                await django_cache.adecr(await _spend_counter(key, "total"), micros)
            which = "total" if scope == "total" else "monthly"
            raise GatewayError(402, f"This API key's {which} budget of {budget} {settings.CURRENCY} is spent.",
                               code="budget_exceeded")
    return Reservation(key, micros, month)


async def _check_rates(key: ApiKey) -> None:
    moving, fixed = _rate_limiters()
    if key.rpm:
        item = RateLimitItemPerMinute(key.rpm)
        if not await moving.hit(item, "rpm", str(key.pk)):
            reset, _ = await moving.get_window_stats(item, "rpm", str(key.pk))
            raise _rate_limited(f"This API key is limited to {key.rpm} requests per minute.", reset)
    if key.tpm:
        item = RateLimitItemPerMinute(key.tpm)
        if not await fixed.test(item, "tpm", str(key.pk)):
            reset, _ = await fixed.get_window_stats(item, "tpm", str(key.pk))
            raise _rate_limited(f"This API key is limited to {key.tpm} tokens per minute.", reset)


def _rate_limited(message: str, reset_at: float) -> GatewayError:
    retry_after = max(1, math.ceil(reset_at - datetime.now(UTC).timestamp()))
    return GatewayError(429, message, code="rate_limit_exceeded", retry_after=retry_after)


async def _spend_counter(key: ApiKey, scope: str) -> str:
    """The cache key of a spend counter, seeded from the usage records if it is not there."""
    counter = f"spend:{key.pk}:{scope}"
    if await django_cache.aget(counter) is None:
        records = UsageRecord.objects.filter(api_key=key)
        if scope != "total":
            year, month = map(int, scope.split("-"))
            records = records.filter(created_at__gte=datetime(year, month, 1, tzinfo=UTC))
        spent = (await records.aaggregate(total=Sum("cost")))["total"] or 0
        await django_cache.aadd(counter, math.ceil(Decimal(spent) * MICRO), timeout=None)
    return counter


def settle(reservation: Reservation | None, record: UsageRecord) -> None:
    """Replace the reservation by the real cost, and count the tokens against the key's tpm."""
    if reservation is None and (record.api_key is None or not record.api_key.tpm):
        return
    loop = asyncio.get_running_loop()
    task = loop.create_task(_settle(reservation, record))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task] = set()


async def _settle(reservation: Reservation | None, record: UsageRecord) -> None:
    key = record.api_key
    if key is not None and key.tpm and record.total_tokens:
        _, fixed = _rate_limiters()
        await fixed.hit(RateLimitItemPerMinute(key.tpm), "tpm", str(key.pk), cost=record.total_tokens)
    if reservation is not None:
        delta = math.ceil(Decimal(record.cost) * MICRO) - reservation.micros
        scopes = [s for s, b in (("total", key.budget_total), (reservation.month, key.budget_monthly)) if b is not None]
        for scope in scopes:
            await django_cache.aincr(f"spend:{key.pk}:{scope}", delta)


async def settled() -> None:
    """Wait for the settlements under way (tests, shutdown)."""
    if _pending:
        await asyncio.gather(*_pending, return_exceptions=True)
