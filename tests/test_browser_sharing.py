"""Sharing in a real browser: alice shares with bob, bob reads it (live) without the message box
and continues it in his own chats, alice stops sharing and bob's page is gone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message, Model
from tests.conftest import BROWSER_TIMEOUT_MS, chain, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WS_OPEN = "() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1"


@pytest.fixture
def second_page(browser):
    """bob's browser, beside alice's."""
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def test_share_read_continue_and_stop_sharing(page, second_page, site_server, alice, bob, provider):
    plans = Conversation.objects.create(owner=alice, title="Launch plans", model=Model.objects.get(name="echo"))
    chain(plans, [Message(role="user", content="When do we launch?"),
                  Message(role="assistant", content="Echo: When do we launch?", model="echo")])
    log_in(page, site_server.url, "alice", "alice-password")
    page.goto(f"{site_server.url}/c/{plans.id}/")
    page.wait_for_function(WS_OPEN)

    # alice shares it with bob.
    page.locator("#chat-header").get_by_role("button", name="Share").click()
    panel = page.locator("#share-panel")
    expect(panel.get_by_label("Everyone in the team")).not_to_be_checked()
    panel.get_by_role("group", name="Members").get_by_label("bob").check()
    panel.get_by_role("button", name="Save").click()
    expect(panel.get_by_role("status")).to_have_text("Shared with bob.")
    expect(page.locator("#share-state")).to_have_text("Shared")

    # bob finds it under Shared with me and opens it: no message box, who shared it.
    reader = second_page
    log_in(reader, site_server.url, "bob", "bob-password")
    reader.get_by_role("link", name="Shared with me").click()
    reader.wait_for_url(f"{site_server.url}/shared/")
    expect(reader.get_by_role("heading", name="Shared with me")).to_be_visible()
    reader.get_by_role("link", name="Launch plans").click()
    reader.wait_for_url(f"{site_server.url}/c/{plans.id}/")
    reader.wait_for_function(WS_OPEN)
    expect(reader.locator(".message.assistant .body")).to_have_text("Echo: When do we launch?")
    expect(reader.get_by_text("Shared by alice · read-only")).to_be_visible()
    expect(reader.get_by_label("Message")).to_have_count(0)
    for control in ("Send", "Edit", "Regenerate", "Rename", "Share", "Delete"):
        expect(reader.get_by_role("button", name=control, exact=True)).to_have_count(0)
    expect(reader.get_by_role("button", name="Copy").first).to_be_visible()

    # alice writes on; bob sees the reply come in.
    page.get_by_label("Message").fill("And the budget?")
    page.get_by_role("button", name="Send").click()
    expect(reader.locator(".message.assistant.complete .body").last).to_have_text("Echo: And the budget?")

    # bob continues it in his own chats: a copy of his, with the message box.
    reader.get_by_role("button", name="Continue in my chats").click()
    reader.wait_for_url(re.compile(r".*/c/\d+/$"))
    copy = Conversation.objects.get(owner=bob)
    assert reader.url == f"{site_server.url}/c/{copy.id}/"
    expect(reader.locator("#conversation-title")).to_have_text("Launch plans")
    expect(reader.locator(".message.assistant .body").last).to_have_text("Echo: And the budget?")
    reader.get_by_label("Message").fill("My own question")
    reader.get_by_role("button", name="Send").click()
    expect(reader.locator(".message.assistant.complete .body").last).to_have_text("Echo: My own question")
    assert plans.messages.count() == 4  # alice's has none of bob's

    # bob opens it again; alice stops sharing: his open page is emptied, a reload is a 404.
    reader.goto(f"{site_server.url}/c/{plans.id}/")
    reader.wait_for_function(WS_OPEN)
    # The panel is open already: Share draws it again; Stop sharing is pressed on the new one (on the
    # old one, the redraw could land after the answer and say "Not shared" instead).
    panel.locator("form").evaluate("form => form.dataset.drawn = 'before'")
    page.locator("#chat-header").get_by_role("button", name="Share").click()
    page.wait_for_selector("#share-panel form:not([data-drawn])")
    panel.get_by_role("button", name="Stop sharing").click()
    expect(panel.get_by_role("status")).to_have_text("Not shared any more: only you can open it.")
    expect(reader.locator("#composer-notice")).to_have_text("This conversation is no longer shared with you.")
    expect(reader.locator("#messages")).not_to_contain_text("launch")
    response = reader.reload()
    assert response.status == 404
    reader.goto(f"{site_server.url}/shared/")
    expect(reader.get_by_text("Nothing is shared with you yet.")).to_be_visible()
