"""The chat in a real browser (Debian's chromium, driven by Playwright) against a real server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message, Model
from tests.conftest import log_in
from tests.live import Server

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_new_chat(page, site_server, user="alice", password="alice-password"):
    log_in(page, site_server.url, user, password)
    page.get_by_role("button", name="New chat").first.click()
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    expect(page.locator("#chat")).to_be_visible()
    # The websocket is up once the page's htmx ws extension has connected.
    page.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")


def send(page, text: str, model: str) -> None:
    page.get_by_label("Model").select_option(model)
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


@pytest.fixture
def fresh_server(transactional_db):
    """A server of its own: the shared one remembers, once it has seen a user, that the site has
    users (conversations/middleware.py), whatever test ran on it before."""
    server = Server().start()
    yield server
    server.stop()


def test_first_visit_creates_the_admin_then_chats(page, fresh_server, provider):
    site_server = fresh_server
    page.goto(site_server.url + "/")
    expect(page).to_have_url(re.compile(r"/setup/$"))
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password:", exact=True).fill("a-long-pass-phrase")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase")
    page.get_by_role("button", name="Create admin account").click()
    page.get_by_role("button", name="New chat").first.click()
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    page.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")
    send(page, "hello from the admin", "echo")
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: hello from the admin")


def test_a_reply_streams_in_and_is_rendered(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    # Long enough (about 2 s at 30 ms a word) for the streaming state to be seen on a busy machine.
    question = "stream **this** please " + " ".join(f"w{i}" for i in range(60))
    send(page, question, "slow")
    expect(page.get_by_label("Message")).to_have_value("")
    expect(page.locator(".message.user")).to_contain_text("stream **this** please")
    # Watch it stream: a partial text, then the finished message rendered as Markdown.
    expect(page.locator(".message.assistant.streaming")).to_contain_text("Echo:")
    expect(page.locator(".message.assistant.complete strong")).to_have_text("this")
    expect(page.locator("#conversation-title")).to_contain_text("stream **this** please")


def test_reload_mid_reply_continues_and_stop_keeps_what_was_written(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    send(page, "go", "long")
    expect(page.locator(".message.assistant.streaming")).to_contain_text("word20")
    page.reload()
    # After the reload the reply is still streaming in, from where it was.
    expect(page.locator(".message.assistant.streaming")).to_contain_text("word60")
    text_after_reload = page.locator(".message.assistant .streaming-text").inner_text()
    assert text_after_reload.startswith("word0 word1 word2")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".message.assistant.cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    shown = page.locator(".message.assistant .body").inner_text()

    page.reload()
    saved = Message.objects.get(role="assistant")
    assert saved.status == "cancelled" and "word60" in saved.content and "word399" not in saved.content
    expect(page.locator(".message.assistant.cancelled .body")).to_have_text(shown)
    expect(page.locator(".message.user")).to_have_text(re.compile("go"))


def test_closing_the_tab_mid_reply_loses_nothing(browser, site_server, alice, provider):
    context = browser.new_context()
    page = context.new_page()
    open_new_chat(page, site_server)
    send(page, "keep going", "slow")
    expect(page.locator(".message.assistant.streaming")).to_be_visible()
    conversation = Conversation.objects.get(owner__username="alice")
    context.close()

    page = browser.new_page()
    log_in(page, site_server.url, "alice", "alice-password")
    page.goto(f"{site_server.url}/c/{conversation.id}/")
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: keep going")
    page.close()


def test_a_failed_reply_shows_the_error_in_place_and_regenerates(page, site_server, alice, provider):
    Model.objects.create(provider=provider, upstream_id="flaky", name="flaky")  # breaks once, then answers
    open_new_chat(page, site_server)
    send(page, "a b c d e", "flaky")
    error = page.locator(".message.assistant.error")
    expect(error.get_by_role("alert")).to_contain_text("upstream")
    expect(error.locator(".body")).to_contain_text("Echo: a b")
    failed = Message.objects.get(role="assistant")
    assert (failed.status, failed.content) == ("error", "Echo: a b")

    error.get_by_role("button", name="Regenerate").click()
    # The failed reply is replaced, in place, by a new one written in full: its second version.
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: a b c d e")
    expect(page.locator(f"#msg-{failed.id}")).to_have_count(0)
    expect(page.locator(".message.assistant")).to_have_count(1)
    expect(page.locator(".message.assistant [role=alert]")).to_have_count(0)
    expect(page.locator(".message.assistant .version-count")).to_have_text("2 / 2")
    reply = Message.objects.filter(role="assistant").latest("id")
    assert reply.id != failed.id and (reply.status, reply.content, reply.error) == ("complete", "Echo: a b c d e", "")
    # The failed one is still there, one version back.
    page.get_by_role("button", name="Previous version").click()
    expect(page.locator(f"#msg-{failed.id}")).to_contain_text("Echo: a b")
    expect(page.locator(".message.assistant .version-count")).to_have_text("1 / 2")


def test_a_second_tab_sees_the_reply_live(browser, site_server, alice, provider):
    first = browser.new_page()
    open_new_chat(first, site_server)
    second = browser.new_page()
    log_in(second, site_server.url, "alice", "alice-password")
    second.goto(first.url)
    second.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")
    send(first, "both tabs", "slow")
    expect(second.locator(".message.user")).to_contain_text("both tabs")
    expect(second.locator(".message.assistant.complete")).to_contain_text("Echo: both tabs")
    first.close()
    second.close()


def test_a_message_the_server_refuses_is_given_back_to_the_box(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    send(page, "go", "long")
    expect(page.locator(".message.assistant.streaming")).to_contain_text("word5")
    box = page.get_by_label("Message")
    box.fill("a second question, typed while the reply is written")
    box.press("Enter")  # Send is hidden while a reply is written; Enter still sends
    expect(page.locator("#composer-notice")).to_contain_text("A reply is still being written")
    expect(box).to_have_value("a second question, typed while the reply is written")
    assert Message.objects.filter(role="user").count() == 1  # refused: not stored
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".message.assistant.cancelled")).to_be_visible()
    # Accepted this time: the box empties and stays empty.
    box.press("Enter")
    expect(page.locator(".message.user")).to_have_count(2)
    expect(box).to_have_value("")
