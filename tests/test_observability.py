"""/metrics and the request and reply log lines, from the production command's own processes.

The site runs as `make serve` runs it (manage.py serve: Uvicorn, DEBUG off, prometheus-client in
multiprocess mode; two workers on PostgreSQL + Redis, one on the embedded default), with
LOG_FORMAT=json. Real requests go through both doors (/v1 and a chat tab), a search and a page;
then the scrape is parsed with prometheus-client's parser and checked against the usage rows the
same requests wrote, and the log lines against the requests, with no secret or message text in any
line the server wrote.
"""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from conversations.models import ApiKey, Conversation, Message, Model, UsageRecord
from tests.conftest import REDIS
from tests.live import LiveTab, Server
from tests.test_reply_kill import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-for-the-test"
SECRET_IN_BODY = "sk-proj-Hunter2SecretLooking0123456789abcdef"
SAID = "the words of a private question"


@pytest.fixture
def production_site(django_db_blocker, tmp_path):
    with django_db_blocker.unblock():
        server = Server(server="serve", workers=2 if REDIS else 1, env={
            "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"), "LOG_FORMAT": "json",
        }).start()
    yield server
    server.stop()


def scrape(server: Server, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)


def samples(server: Server) -> dict:
    """{(sample name, frozenset of labels): value} from a scrape, parsed by prometheus-client."""
    response = scrape(server)
    assert response.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def v1(server: Server, secret: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"},
                      timeout=30)


def settled(request_id: str) -> UsageRecord:
    return wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exclude(status="pending").first(),
                    f"the usage row of {request_id}")


@pytest.mark.timeout(300)  # the production command's processes to start on a loaded machine
def test_metrics_and_log_lines_after_real_requests_hold_no_secret(production_site, alice, provider):
    site = production_site
    key, secret = ApiKey.issue(alice, name="observed")
    # /v1: three answers, one stream, one upstream failure whose error echoes the provider's key
    # and the messages, and a body holding a key-shaped secret.
    answered = [v1(site, secret, {"model": "echo", "messages": [{"role": "user", "content": f"hello {n} {SAID}"}]})
                for n in range(3)]
    streamed = v1(site, secret, {"model": "echo", "stream": True,
                                 "messages": [{"role": "user", "content": f"my key is {SECRET_IN_BODY}"}]})
    failed = v1(site, secret, {"model": "leak-500", "messages": [{"role": "user", "content": SAID}]})
    assert [r.status_code for r in answered] == [200, 200, 200] and streamed.status_code == 200
    assert failed.status_code == 502

    # The chat: a tab sends a message and the reply completes; a page and a search.
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    tab = LiveTab(site, alice, conversation.id)
    tab.send(message=f"{SAID} in the chat")
    tab.read_reply()
    client = Client()
    client.force_login(alice)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    assert httpx.get(f"{site.url}/c/{conversation.id}/", cookies=cookies, timeout=10).status_code == 200
    assert httpx.get(f"{site.url}/search/?q=words", cookies=cookies, timeout=10).status_code == 200

    api_rows = [settled(r.headers["X-Request-Id"]) for r in (*answered, streamed)]
    failed_row = settled(failed.headers["X-Request-Id"])
    reply = Message.objects.get(conversation=conversation, role="assistant")
    chat_row = settled(reply.request_id)

    found = samples(site)
    assert value(found, "chatsite_http_requests_total", route="api_chat_completions", method="POST", status="200") == 4
    assert value(found, "chatsite_http_requests_total", route="api_chat_completions", method="POST", status="502") == 1
    assert value(found, "chatsite_http_requests_total", route="conversation", method="GET", status="200") == 1
    assert value(found, "chatsite_tokens_total", model="echo", provider="loop", direction="out") == \
        sum(row.completion_tokens for row in [*api_rows, chat_row]) > 0
    assert value(found, "chatsite_tokens_total", model="echo", provider="loop", direction="in") == \
        sum(row.prompt_tokens for row in [*api_rows, chat_row]) > 0
    assert value(found, "chatsite_time_to_first_token_seconds_count", model="echo", source="api") == 4
    assert value(found, "chatsite_time_to_first_token_seconds_count", model="echo", source="chat") == 1
    assert value(found, "chatsite_upstream_duration_seconds_count", model="echo", source="chat") == 1
    assert value(found, "chatsite_upstream_duration_seconds_sum", model="echo", source="api") == pytest.approx(
        sum(row.duration_ms for row in api_rows) / 1000, abs=0.01)
    assert value(found, "chatsite_upstream_errors_total", provider="loop", kind="http_500") == 1
    assert value(found, "chatsite_upstream_attempts_total", model="leak-500", provider="loop", source="api",
                 status="error") == 1
    assert value(found, "chatsite_websockets_open") == 1  # the tab, still open
    assert value(found, "chatsite_replies_streaming") == 0
    assert value(found, "chatsite_search_seconds_count") == 1
    assert ("chatsite_usage_queue_length", frozenset()) in found
    tab.close()
    wait_for(lambda: value(samples(site), "chatsite_websockets_open") == 0, "the closed tab to leave the gauge")

    # One JSON line per request and per reply, with who, what and how long; no secret anywhere.
    output = site.all_output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = {line["request_id"]: line for line in lines if line.get("event") == "request"}
    for response, row in zip([*answered, streamed], api_rows, strict=True):
        line = requests[response.headers["X-Request-Id"]]
        assert (line["route"], line["status"], line["user_id"], line["key_prefix"]) == \
            ("api_chat_completions", 200, alice.pk, key.prefix)
        assert (line["model"], line["provider"]) == ("echo", "loop")
        assert (line["prompt_tokens"], line["completion_tokens"]) == (row.prompt_tokens, row.completion_tokens)
        assert line["ttft_ms"] is not None and line["duration_ms"] >= line["ttft_ms"]
    assert requests[failed.headers["X-Request-Id"]]["status"] == 502
    assert failed_row.status == "error"
    page = [line for line in lines if line.get("event") == "request" and line["route"] == "conversation"]
    assert len(page) == 1 and page[0]["user_id"] == alice.pk and page[0]["status"] == 200
    replies = [line for line in lines if line.get("event") == "reply"]
    assert len(replies) == 1
    assert (replies[0]["request_id"], replies[0]["user_id"], replies[0]["model"], replies[0]["status"]) == \
        (reply.request_id, alice.pk, "echo", "ok")
    assert replies[0]["completion_tokens"] == chat_row.completion_tokens
    for never in (secret, SECRET_IN_BODY, "sk-upstream-secret-1234", SAID, "hello 1", cookies[settings.SESSION_COOKIE_NAME]):
        assert never not in output


@pytest.mark.timeout(300)
def test_metrics_are_refused_without_the_token_or_an_allowed_address(production_site):
    assert scrape(production_site, token=None).status_code == 404
    assert scrape(production_site, token="not-the-token").status_code == 404
    assert scrape(production_site).status_code == 200


def test_metrics_are_served_to_the_allowed_addresses(settings, client):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer ").status_code == 200
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
