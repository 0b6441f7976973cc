"""The fault matrix: each fault caused for real against a real site process, and what is kept.

For each fault: the message's state and the text kept, the usage record, and what a tab (a real
websocket to the site process) and a /v1 client see. The faults are caused, not simulated: the
loopback upstream answers with an error status, cuts its stream, hangs; a provider points at a
port nothing listens on; the client goes away mid-stream; the test's own redis-server is stopped
and started again; PostgreSQL terminates the site's connections. Truncated streams, U+2028 and
kill -9 of a site process are in tests/test_reply_durability.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import httpx2 as httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from conversations.models import (
    ApiKey,
    Conversation,
    Message,
    Model,
    Profile,
    Provider,
    UsageRecord,
)
from tests import live
from tests.live import ROOT, LiveTab, Server, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("faults")]

REDIS_SERVER = shutil.which("redis-server")
needs_redis_server = pytest.mark.skipif(not REDIS_SERVER, reason="redis-server is not installed (apt-get install redis-server)")


def wait_for(predicate, timeout: float = 20.0, what: str = "the condition"):
    """Poll until predicate() is truthy (its value), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return value


# -- real processes: a site, a tab on it (tests.live.LiveTab), a Redis of the test's own


class RedisServer:
    """A redis-server of the test's own on a free port (never the machine's shared one), that the
    test stops and starts again on the same port, empty (no persistence), as after a restart."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(ROOT / "var")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers, 10, "redis-server to start")
        return self

    def answers(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def own_redis():
    if not REDIS_SERVER:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_site(own_redis, django_db_blocker):
    """A site process on the test database and the test's own Redis."""
    with django_db_blocker.unblock():
        server = Server(env={"REDIS_URL": own_redis.url}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_site(django_db_setup, django_db_blocker):
    """A site process (Daphne). On PostgreSQL its connections are named, for pg_terminate_backend
    (its pool keeps them between requests: the harder case)."""
    with django_db_blocker.unblock():
        url = live.test_database_url()
        if url.startswith("postgres"):
            url += "?application_name=chatsite-fault-site"
        server = Server(env={"DATABASE_URL": url}).start()
    yield server
    server.stop()


@pytest.fixture
def fault_models(provider, upstream):
    """Models for the faults the loopback upstream's own models do not cover: an upstream 400, an
    upstream that does not answer in time (the "hang" model behind a provider with a 2 s
    timeout), a provider whose port has nothing listening on it."""
    Model.objects.create(provider=provider, upstream_id="fail-400", name="fail-400")
    impatient = Provider(name="impatient", base_url=upstream.base_url, timeout=2.0)
    impatient.api_key = "sk-impatient"
    impatient.save()
    Model.objects.create(provider=impatient, upstream_id="hang", name="timeout")
    gone = Provider(name="gone", base_url=f"http://127.0.0.1:{free_port()}/v1")
    gone.api_key = "sk-gone"
    gone.save()
    Model.objects.create(provider=gone, upstream_id="anything", name="refused")


def v1(server: Server, secret: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"},
                      timeout=30, **kwargs)


def usage_of(request_id: str) -> UsageRecord:
    return wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exclude(status="pending").first(),
                    what=f"the settled usage record of {request_id}")


def chat_usage(conversation: Conversation) -> UsageRecord:
    """The chat's usage record once settled (it is "pending" from the request's start)."""
    return wait_for(lambda: UsageRecord.objects.filter(session_id=f"conversation-{conversation.id}")
                    .exclude(status="pending").first(), what="the chat's settled usage record")


def sse_events(text: str) -> list:
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


# -- upstream faults, through both front doors

# model -> (the /v1 status, the error type): before the first token, so a stream fails the same
UPSTREAM_FAULTS = {
    "fail-400": (400, "invalid_request_error"),
    "fail-401": (502, "upstream_error"),  # the provider refused Chatsite's key: not the caller's fault
    "fail-429": (429, "rate_limit_error"),
    "fail-500": (502, "upstream_error"),
    "timeout": (504, "timeout"),
    "refused": (503, "service_unavailable"),
}


@pytest.mark.parametrize("model", list(UPSTREAM_FAULTS))
def test_an_upstream_error_is_explained_in_place_in_every_tab_and_recorded(fault_site, alice, fault_models, model):
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    writer, other = LiveTab(fault_site, alice, conversation.id), LiveTab(fault_site, alice, conversation.id)
    writer.send(message="hello", model=model)
    final = writer.read_reply(status="error")[-1]
    seen_by_other = other.read_reply(status="error")[-1]

    reply = Message.objects.get(conversation=conversation, role="assistant")
    assert reply.status == "error" and reply.error and reply.content == ""
    # The explanation is in place, with a way to try again, in each tab.
    for frame in (final, seen_by_other):
        assert f'id="msg-{reply.id}"' in frame and 'role="alert"' in frame and "Regenerate" in frame
    assert Message.objects.get(conversation=conversation, role="user").content == "hello"  # the question is kept
    record = chat_usage(conversation)
    assert (record.status, record.model_name, record.completion_tokens) == ("error", model, 0) and record.error
    writer.close()
    other.close()


@pytest.mark.parametrize("model", list(UPSTREAM_FAULTS))
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_error_on_v1_is_an_openai_error_with_its_status_and_recorded(fault_site, alice_key, fault_models, model, stream):
    status, kind = UPSTREAM_FAULTS[model]
    response = v1(fault_site, alice_key, {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    # Before the first token, a stream fails with a real HTTP status too.
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == kind and error["message"]
    record = usage_of(response.headers["X-Request-Id"])
    assert (record.status, record.source, record.model_name) == ("error", "api", model)


def test_a_stream_cut_mid_reply_keeps_the_partial_text_in_every_tab(fault_site, alice, provider):
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    writer, other = LiveTab(fault_site, alice, conversation.id), LiveTab(fault_site, alice, conversation.id)
    writer.send(message="a b c d e f", model="break")
    final = writer.read_reply(status="error")[-1]
    seen_by_other = other.read_reply(status="error")[-1]

    reply = Message.objects.get(conversation=conversation, role="assistant")
    assert (reply.status, reply.content) == ("error", "Echo: a b")  # the words before the cut
    for frame in (final, seen_by_other):
        assert "Echo: a b" in frame and 'role="alert"' in frame and "Regenerate" in frame
    record = chat_usage(conversation)
    assert record.status == "error" and record.completion_tokens > 0  # billed for what it wrote
    writer.close()
    other.close()


def test_a_stream_cut_mid_reply_on_v1_ends_with_an_error_event_then_done(fault_site, alice_key, provider):
    response = v1(fault_site, alice_key, {"model": "break", "stream": True,
                                          "messages": [{"role": "user", "content": "a b c d e f"}]})
    assert response.status_code == 200  # the stream had started
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "upstream_error" and error["message"]
    chunks = [json.loads(e) for e in events[:-2]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Echo: a b"
    record = usage_of(response.headers["X-Request-Id"])
    assert record.status == "error" and record.completion_tokens > 0


def test_a_v1_client_that_goes_away_mid_stream_stops_the_upstream_and_is_billed_for_what_was_made(fault_site, alice_key, upstream):
    cancelled_before = upstream.cancelled
    with httpx.stream("POST", f"{fault_site.url}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {alice_key}"},
                      json={"model": "long", "stream": True, "messages": [{"role": "user", "content": "go"}]}) as response:
        assert response.status_code == 200
        request_id = response.headers["X-Request-Id"]
        seen = ""
        for line in response.iter_lines():
            seen += line
            if "word5" in seen:
                break  # and the connection is closed, mid-stream
    # The site closes its upstream request, and records what the reply made until then.
    wait_for(lambda: upstream.cancelled > cancelled_before, what="the upstream request to be closed")
    record = usage_of(request_id)
    assert record.status == "cancelled" and 5 <= record.completion_tokens < 400


# -- PostgreSQL terminates the site's connections

on_postgres = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                 reason="PostgreSQL only (pg_terminate_backend)")


def terminate_site_connections() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'chatsite-fault-site' AND datname = current_database()")
        assert cursor.fetchall(), "the site had no connection to terminate"


@on_postgres
def test_after_the_database_drops_the_sites_connections_pages_and_tabs_work(fault_site, alice, provider):
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    client = Client()
    client.force_login(alice)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    tab = LiveTab(fault_site, alice, conversation.id)
    tab.send(message="before", model="echo")
    tab.read_reply()
    assert httpx.get(f"{fault_site.url}/c/{conversation.id}/", cookies=cookies).status_code == 200

    terminate_site_connections()
    page = httpx.get(f"{fault_site.url}/c/{conversation.id}/", cookies=cookies)
    assert page.status_code == 200 and "Echo: before" in page.text
    # The tab opened before keeps working: a reply is written, saved and shown; a new tab connects.
    tab.send(message="after", model="echo")
    tab.read_until(lambda f: "Echo: after" in f and 'class="message assistant complete"' in f)
    assert Message.objects.filter(conversation=conversation, content="Echo: after", status="complete").exists()
    assert chat_usage(conversation).status == "ok"
    LiveTab(fault_site, alice, conversation.id).close()
    tab.close()


# -- Redis stopped and started


def healthz(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/healthz", timeout=10)


def test_while_redis_is_down_v1_refuses_limited_keys_with_503_serves_the_others_and_recovers(own_redis, redis_site, alice, provider):
    _, limited = ApiKey.issue(alice, name="limited", rpm=1000)
    _, budgeted = ApiKey.issue(alice, name="budgeted", budget_total=100)
    _, plain = ApiKey.issue(alice, name="plain")
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    assert healthz(redis_site).json() == {"status": "ok", "database": "ok", "redis": "ok"}
    first = v1(redis_site, limited, body)  # so the site holds connections to Redis when it stops
    assert first.status_code == 200
    usage_of(first.headers["X-Request-Id"])

    own_redis.stop()
    health = healthz(redis_site)
    assert health.status_code == 503
    assert health.json()["status"] == "error" and health.json()["database"] == "ok"
    assert health.json()["redis"].startswith("unavailable")
    for secret in (limited, budgeted):
        for stream in (False, True):
            refused = v1(redis_site, secret, {**body, "stream": stream})
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "5" and refused.headers["X-Request-Id"]
            assert refused.json()["error"]["type"] == "service_unavailable"
            assert refused.json()["error"]["code"] == "limits_unavailable"
    served = v1(redis_site, plain, body)  # a key without limits does not need Redis
    assert served.status_code == 200 and served.json()["choices"][0]["message"]["content"] == "Echo: hi"
    usage_of(served.headers["X-Request-Id"])
    # The refused requests never reached the upstream: the only other record is the first request's.
    assert list(UsageRecord.objects.exclude(api_key__name="plain").values_list("request_id", flat=True)) == [
        first.headers["X-Request-Id"]]

    own_redis.start()  # on the same port, empty, as a restarted Redis
    wait_for(lambda: healthz(redis_site).status_code == 200, what="/healthz to say ok")
    for secret in (limited, budgeted):
        again = v1(redis_site, secret, body)  # nothing to restart
        assert again.status_code == 200 and usage_of(again.headers["X-Request-Id"]).status == "ok"


def test_while_redis_is_down_the_chat_works_in_its_process_and_limits_are_explained(own_redis, redis_site, alice, bob, provider):
    Profile.objects.update_or_create(user=bob, defaults={"rpm": 1000})
    echo = Model.objects.get(name="echo")
    mine = Conversation.objects.create(owner=alice, model=echo)
    bobs = Conversation.objects.create(owner=bob, model=echo)

    own_redis.stop()
    # The handshake no longer needs Redis (it was an HTTP 500): a tab connects and chats, and
    # a second tab on the same process sees the reply.
    first, second = LiveTab(redis_site, alice, mine.id), LiveTab(redis_site, alice, mine.id)
    first.send(message="no redis", model="echo")
    for tab in (first, second):
        tab.read_until(lambda f: "Echo: no redis" in f and 'class="message assistant complete"' in f)
    assert Message.objects.get(conversation=mine, role="assistant").status == "complete"
    assert chat_usage(mine).status == "ok"

    # A member with limits is told in place why the reply cannot be written now; the question is kept.
    limited = LiveTab(redis_site, bob, bobs.id)
    limited.send(message="am I limited", model="echo")
    final = limited.read_reply(status="error")[-1]
    assert "cannot be checked right now" in final and 'role="alert"' in final and "Regenerate" in final
    refused = Message.objects.get(conversation=bobs, role="assistant")
    assert refused.status == "error" and "try again" in refused.error
    assert Message.objects.get(conversation=bobs, role="user").content == "am I limited"

    own_redis.start()
    wait_for(lambda: healthz(redis_site).status_code == 200, what="/healthz to say ok")
    limited.send(action="regenerate", message_id=refused.id)
    limited.read_until(lambda f: "Echo: am I limited" in f and 'class="message assistant complete"' in f)
    assert Message.objects.filter(conversation=bobs, role="assistant").latest("id").content == "Echo: am I limited"
    for tab in (first, second, limited):
        tab.close()


@needs_redis_server
def test_after_redis_returns_tabs_on_another_process_see_replies_again(own_redis, django_db_blocker, alice, provider):
    """Two processes on one Redis: a tab opened before the outage and one opened during it both
    hear the other process's replies once Redis is back, with no restart and no reload."""
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    with django_db_blocker.unblock():
        writer_site, reader_site = Server(env={"REDIS_URL": own_redis.url}), Server(env={"REDIS_URL": own_redis.url})
    try:
        writer_site.start()
        reader_site.start()
        writer = LiveTab(writer_site, alice, conversation.id)
        before = LiveTab(reader_site, alice, conversation.id)
        own_redis.stop()
        during = LiveTab(reader_site, alice, conversation.id)
        own_redis.start()
        wait_for(lambda: healthz(writer_site).status_code == healthz(reader_site).status_code == 200,
                 what="/healthz to say ok on both")

        # Each process reconnects on its own schedule: ask until a reply crosses (each one is written).
        deadline, n = time.monotonic() + 30, 0
        while True:
            n += 1
            writer.send(message=f"ping {n}", model="echo")
            writer.read_until(lambda f, n=n: f"Echo: ping {n}" in f and 'class="message assistant complete"' in f)
            try:
                for tab in (before, during):
                    tab.read_until(lambda f, n=n: f"Echo: ping {n}" in f and "assistant complete" in f, timeout=1)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        for tab in (writer, before, during):
            tab.close()
    finally:
        writer_site.stop()
        reader_site.stop()
    assert Message.objects.filter(conversation=conversation, role="assistant", status="complete").count() == n

