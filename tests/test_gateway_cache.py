"""The gateway's per-process caches: hits skip the database, changes are seen at once."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.api.auth import authenticate
from conversations.gateway import cache
from conversations.gateway.errors import GatewayError
from conversations.gateway.pipeline import Caller, resolve_model
from conversations.models import ApiKey, Model

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def caching(settings):
    settings.GATEWAY_CACHE_SECONDS = 60
    cache.clear_all()
    yield
    cache.clear_all()


def test_a_cached_key_and_model_cost_no_queries_and_revoking_is_seen_at_once(alice, provider):
    key, secret = ApiKey.issue(alice)
    authenticate_sync = async_to_sync(authenticate)
    caller = Caller(user=alice, source="api", api_key=authenticate_sync(f"Bearer {secret}"))
    async_to_sync(resolve_model)(caller, "echo")
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_sync(f"Bearer {secret}").pk == key.pk
        assert async_to_sync(resolve_model)(caller, "echo").name == "echo"
    assert len(queries) == 0

    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    with pytest.raises(GatewayError) as error:
        authenticate_sync(f"Bearer {secret}")
    assert error.value.status == 401


def test_disabling_a_model_is_seen_at_once(alice, provider):
    caller = Caller(user=alice, source="api")
    async_to_sync(resolve_model)(caller, "echo")
    model = Model.objects.get(name="echo")
    model.enabled = False
    model.save(update_fields=["enabled"])
    with pytest.raises(GatewayError) as error:
        async_to_sync(resolve_model)(caller, "echo")
    assert error.value.status == 404


def test_a_burst_of_misses_makes_the_queries_once(alice, provider):
    key, secret = ApiKey.issue(alice)
    caller = Caller(user=alice, source="api")

    async def burst():
        keys = await asyncio.gather(*[authenticate(f"Bearer {secret}") for _ in range(20)])
        models = await asyncio.gather(*[resolve_model(caller, "echo") for _ in range(20)])
        return keys, models

    with CaptureQueriesContext(connection) as queries:
        keys, models = async_to_sync(burst)()
    assert {k.pk for k in keys} == {key.pk} and {m.name for m in models} == {"echo"}
    assert len(queries) == 3  # the key (with its owner), its allowed models, the model


def test_a_load_that_a_change_overtook_is_not_kept():
    async def scenario():
        loaded = asyncio.Event()

        async def load():
            await loaded.wait()
            return "before the change"

        first = asyncio.ensure_future(cache.aget_or_load(cache.templates, "t", load))
        await asyncio.sleep(0)
        cache.clear_all()  # an admin's change, while the load is under way
        loaded.set()
        assert await first == "before the change"
        assert cache.templates.get("t") is cache.MISSING
        assert await cache.aget_or_load(cache.templates, "t", _after) == "after the change"

    async_to_sync(scenario)()


async def _after():
    return "after the change"


def test_a_caller_that_goes_away_does_not_cancel_the_others_load():
    async def scenario():
        loaded, calls = asyncio.Event(), []

        async def load():
            calls.append(1)
            await loaded.wait()
            return "the template"

        leaving = asyncio.ensure_future(cache.aget_or_load(cache.templates, "shared", load))
        staying = asyncio.ensure_future(cache.aget_or_load(cache.templates, "shared", load))
        await asyncio.sleep(0)
        leaving.cancel()  # a client that disconnected
        loaded.set()
        assert await staying == "the template" and calls == [1]
        assert leaving.cancelled() and cache.templates.get("shared") == "the template"

    async_to_sync(scenario)()
