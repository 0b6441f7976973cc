from __future__ import annotations

import asyncio
import os

import pytest
from django.contrib.auth import get_user_model

from conversations import middleware
from conversations.gateway import usage
from conversations.models import Conversation, Model, Provider
from tests.upstream import MODELS, Upstream

REDIS = bool(os.environ.get("REDIS_URL"))


@pytest.fixture(scope="session")
def upstream():
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _close_async_connections(django_db_setup, django_db_blocker):
    """The async tests' queries run on asgiref's worker thread, with a connection of its own;
    it is closed before the test database is dropped (PostgreSQL refuses while it is open)."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True)
def _fresh_process_state(upstream):
    """What a process remembers between requests starts empty in each test."""
    middleware.reset()
    usage.discard_pending()
    upstream.requests.clear()
    yield
    usage.discard_pending()


# -- the cast: alice and bob are members, charlie is the admin


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", "alice@example.com", "alice-password")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture
def charlie(db):
    return get_user_model().objects.create_superuser("charlie", "charlie@example.com", "charlie-password")


@pytest.fixture
def provider(db, upstream):
    """The loopback upstream as a provider, with each of its scripted models."""
    loop = Provider(name="loop", base_url=upstream.base_url)
    loop.api_key = "sk-upstream-secret-1234"
    loop.save()
    for name in MODELS:
        Model.objects.create(provider=loop, upstream_id=name, name=name)
    return loop


@pytest.fixture
def conversation(alice, provider):
    return Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
