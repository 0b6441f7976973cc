"""A site process killed mid-reply (SIGKILL: no shutdown code runs): the reply keeps its text and
is marked interrupted, its usage row is settled with the tokens of that text, budgets count it,
and tabs on a surviving process get the final frame and can Stop and Send again."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import httpx2 as httpx
import pytest
from playwright.sync_api import expect

from conversations.gateway.usage import INTERRUPTED_ERROR as USAGE_INTERRUPTED
from conversations.gateway.usage import estimate_tokens
from conversations.models import ApiKey, Message, Model, Profile, UsageRecord
from conversations.models.chat import INTERRUPTED_ERROR
from tests.conftest import REDIS, log_in
from tests.live import Server

pytestmark = [pytest.mark.django_db(transaction=True)]

CONNECTED = "() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1"


@pytest.fixture
def servers(django_db_blocker):
    """Start site processes on the test database; all stopped at the end."""
    started: list[Server] = []

    def start(**kwargs) -> Server:
        with django_db_blocker.unblock():
            server = Server(**kwargs)
            started.append(server)
            return server.start()

    yield start
    for server in started:
        server.stop()


def kill(server: Server) -> None:
    server.process.kill()  # SIGKILL
    server.process.wait(10)


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
    return found


@pytest.fixture
def priced(provider):
    """The long model at one unit a completion token, so that spend is easy to follow."""
    Model.objects.filter(name="long").update(output_price=Decimal(1_000_000))
    return Model.objects.get(name="long")


def open_chat(page, server, model: str, text: str) -> str:
    log_in(page, server.url, "alice", "alice-password")
    page.get_by_role("button", name="New chat").first.click()
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    page.wait_for_function(CONNECTED)
    path = re.sub(r"^https?://[^/]+", "", page.url)
    if text:
        send(page, text, model)
    return path


def send(page, text: str, model: str) -> None:
    page.get_by_label("Model").select_option(model)
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def saved_reply(min_word: int) -> Message:
    """The reply, once its process has saved it up to word<min_word>, and its pending usage row."""
    def saved():
        reply = Message.objects.filter(role="assistant").first()
        return reply if reply and f"word{min_word}" in reply.content else None

    reply = wait_for(saved, f"the reply saved up to word{min_word}")
    wait_for(UsageRecord.objects.filter(request_id=reply.request_id, status="pending").exists, "a pending usage row")
    return reply


def settled_row(request_id: str) -> UsageRecord:
    return wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exclude(status="pending").first(),
                    "the usage row settled")


@pytest.mark.browser
def test_a_site_killed_mid_reply_keeps_the_text_bills_it_and_budgets_count_it(browser, servers, alice, alice_key, priced):
    Profile.objects.create(user=alice, budget_total=Decimal(5000))  # more than the reply reserves
    first = servers(server="uvicorn")
    page = browser.new_page()
    page.set_default_timeout(15_000)
    path = open_chat(page, first, "long", "go")
    expect(page.locator(".message.assistant.streaming")).to_contain_text("word20")
    saved_reply(min_word=20)
    kill(first)

    # Nobody opens the conversation: the restarted site's sweep finds the reply and its usage row.
    second = servers(server="uvicorn")
    reply = Message.objects.get(role="assistant")
    row = settled_row(reply.request_id)
    reply = wait_for(lambda: Message.objects.filter(pk=reply.pk, status="interrupted").first(), "the reply interrupted")
    assert reply.error == INTERRUPTED_ERROR
    assert reply.content.startswith("word0 word1 word2") and "word20" in reply.content and "word399" not in reply.content
    assert row.status == "interrupted" and row.error == USAGE_INTERRUPTED and row.estimated
    assert row.completion_tokens == estimate_tokens(reply.content + reply.reasoning) > 0
    assert row.cost == priced.cost(row.prompt_tokens, row.completion_tokens) == Decimal(row.completion_tokens)

    # The text is there, interrupted, and says why.
    page.goto(second.url + path)
    kept = page.locator(f"#msg-{reply.pk}.interrupted")
    expect(kept).to_contain_text("word0 word1 word2")
    expect(kept.get_by_role("alert")).to_have_text(INTERRUPTED_ERROR)

    # Alice's budget counts the interrupted reply at its real cost, not at what it had reserved.
    assert_spend_is(row.cost, second, alice_key, Profile.objects.filter(user=alice))
    page.close()


def assert_spend_is(cost: Decimal, server: Server, secret: str, budgeted) -> None:
    """A budget of exactly `cost` is spent (402); a little more is not: the spend counter holds the
    settled row's cost (not nothing, not the reservation made when the request began)."""
    def status() -> int:
        return httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                          json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).status_code

    budgeted.update(budget_total=cost)
    assert status() == 402
    budgeted.update(budget_total=cost + Decimal("0.5"))
    assert status() == 200


def test_an_api_stream_whose_process_is_killed_is_settled_with_the_tokens_it_had_made(servers, alice, priced):
    key, secret = ApiKey.issue(alice, name="budgeted", budget_total=Decimal(5000))
    first = servers(server="uvicorn")
    body = {"model": "long", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", f"{first.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {secret}"}, timeout=30) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        next(line for line in lines if "word30" in line)
        # The row is written pending, and its heartbeat carries the tokens made so far.
        beat = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id, status="pending",
                                                           completion_tokens__gt=0).first(), "a heartbeat")
        kill(first)
        with pytest.raises(httpx.HTTPError):
            for _ in lines:
                pass

    second = servers(server="uvicorn")
    row = settled_row(request_id)
    assert row.status == "interrupted" and row.error == USAGE_INTERRUPTED and row.api_key_id == key.pk
    assert row.completion_tokens >= beat.completion_tokens > 0
    assert row.cost == Decimal(row.completion_tokens)
    assert_spend_is(row.cost, second, secret, ApiKey.objects.filter(pk=key.pk))


# -- two processes on PostgreSQL + Redis, a tab on the one that survives

def redis_only(test):
    for mark in (pytest.mark.browser, pytest.mark.redis,
                 pytest.mark.skipif(not REDIS, reason="needs REDIS_URL: the PostgreSQL+Redis pass runs it")):
        test = mark(test)
    return test


def reply_on_one_watched_on_two(browser, one: Server, two: Server):
    writer = browser.new_page()
    writer.set_default_timeout(15_000)
    path = open_chat(writer, one, "long", "")
    watcher = browser.new_page()
    watcher.set_default_timeout(15_000)
    log_in(watcher, two.url, "alice", "alice-password")
    watcher.goto(two.url + path)
    watcher.wait_for_function(CONNECTED)
    send(writer, "across processes", "long")
    expect(watcher.locator(".message.assistant.streaming")).to_contain_text("word15")
    return writer, watcher


@redis_only
@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_tab_on_the_surviving_process_gets_the_interrupted_reply_then_sends(browser, servers, alice, priced, server):
    one, two = servers(server=server), servers(server=server)
    writer, watcher = reply_on_one_watched_on_two(browser, one, two)
    saved_reply(min_word=15)
    kill(one)

    # Daphne has no ASGI lifespan: the sweep started with the tab; Uvicorn's with the site.
    reply = Message.objects.get(role="assistant")
    kept = watcher.locator(f"#msg-{reply.pk}.interrupted")
    expect(kept).to_contain_text("word0 word1", timeout=30_000)
    expect(kept.get_by_role("alert")).to_have_text(INTERRUPTED_ERROR)
    row = settled_row(reply.request_id)
    reply.refresh_from_db()
    assert reply.status == "interrupted" and "word15" in reply.content
    assert row.status == "interrupted" and row.completion_tokens == estimate_tokens(reply.content + reply.reasoning)

    send(watcher, "after the crash", "echo")
    expect(watcher.locator(".message.assistant.complete").last).to_contain_text("Echo: after the crash")
    writer.close()
    watcher.close()


@redis_only
def test_stop_on_a_reply_whose_process_died_interrupts_it_then_send_works(browser, servers, alice, priced):
    # No sweep could mark it in this test's time: Stop does.
    one, two = servers(env={"CHAT_STALE_SECONDS": "300"}), servers(env={"CHAT_STALE_SECONDS": "300"})
    writer, watcher = reply_on_one_watched_on_two(browser, one, two)
    saved_reply(min_word=15)
    kill(one)

    watcher.get_by_role("button", name="Stop").click()
    reply = Message.objects.get(role="assistant")
    kept = watcher.locator(f"#msg-{reply.pk}.interrupted")
    expect(kept).to_contain_text("word0 word1", timeout=30_000)
    reply.refresh_from_db()
    assert reply.status == "interrupted" and "word15" in reply.content

    send(watcher, "after the crash", "echo")
    expect(watcher.locator(".message.assistant.complete").last).to_contain_text("Echo: after the crash")
    writer.close()
    watcher.close()
