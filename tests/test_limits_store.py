"""The spend counters that the sweep reconciles for a row whose process died (limits.reconcile)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from conversations.gateway import limits
from conversations.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_STORE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens on port 1


async def test_a_reconciled_row_moves_the_same_counters_the_member_is_limited_by(alice):
    member = limits.Subject("user", alice.pk, None, None, Decimal(10), Decimal(10))
    month = timezone.now().strftime("%Y-%m")
    before = (await limits.spent(member), await limits.spent(member, month))
    record = UsageRecord(user_id=alice.pk, cost=Decimal("0.5"), created_at=timezone.now())
    await limits.reconcile(record, held_cost=Decimal("0.1"))  # it held 0.1, it cost 0.5
    after = (await limits.spent(member), await limits.spent(member, month))
    assert (after[0] - before[0], after[1] - before[1]) == (Decimal("0.4"), Decimal("0.4"))


async def test_with_the_limits_store_gone_reconciling_logs_and_lets_the_sweep_go_on(alice, caplog):
    record = UsageRecord(user_id=alice.pk, cost=Decimal("0.5"), created_at=timezone.now())
    with override_settings(CACHES=DEAD_STORE), caplog.at_level(logging.WARNING, logger="chatsite.gateway"):
        await limits.reconcile(record, held_cost=Decimal("0.1"))  # no exception out of it
    assert "the store is unavailable" in caplog.text


async def test_a_settlement_adds_to_the_counters_there_and_leaves_a_vanished_one_to_be_seeded(alice):
    from django.core.cache import cache

    from conversations.gateway.pipeline import Caller

    member = limits.Subject("user", alice.pk, None, None, Decimal(10), Decimal(10))
    month = timezone.now().strftime("%Y-%m")
    await UsageRecord.objects.acreate(user=alice, cost=Decimal("1"), status="ok")  # spent before
    before = await limits.spent(member, month)
    total, monthly = limits._counter_name(member.ident, "total"), limits._counter_name(member.ident, month)
    reservation = limits.Reservation(micros=100_000, counters=[total, monthly])  # held 0.1
    await cache.adelete(total)  # evicted meanwhile (or a Redis that restarted empty)
    limits.settle(Caller(user=alice, source="chat"), reservation, UsageRecord(cost=Decimal("0.5")))
    await limits.settled()
    assert await limits.spent(member, month) - before == Decimal("0.4")  # it cost 0.5, held 0.1
    assert await limits.spent(member) == Decimal("1")  # seeded again from the rows
