"""Several server processes sharing Redis: a tab on each sees the same reply, Stop reaches it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from tests.conftest import BROWSER_TIMEOUT_MS, REDIS, log_in
from tests.live import Server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS, reason="needs REDIS_URL: the PostgreSQL+Redis pass runs it"),
]

CONNECTED = "() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1"


@pytest.fixture
def two_servers(django_db_blocker):
    with django_db_blocker.unblock():
        servers = [Server(), Server()]
        try:
            yield [server.start() for server in servers]
        finally:
            for server in servers:
                server.stop()


def open_on(browser, server, path="/"):
    page = browser.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    log_in(page, server.url, "alice", "alice-password")
    if path != "/":
        page.goto(server.url + path)
        page.wait_for_function(CONNECTED)
    return page


def test_a_tab_on_each_process_sees_the_same_reply_and_stop_reaches_it(browser, two_servers, alice, provider):
    one, two = two_servers
    first = open_on(browser, one)
    first.get_by_role("button", name="New chat").first.click()
    first.wait_for_url(re.compile(r".*/c/\d+/$"))
    first.wait_for_function(CONNECTED)
    path = re.sub(r"^https?://[^/]+", "", first.url)
    second = open_on(browser, two, path)

    first.get_by_label("Model").select_option("long")
    first.get_by_label("Message").fill("across processes")
    first.get_by_role("button", name="Send").click()

    # The reply is written by process one; the tab on process two sees it stream.
    expect(second.locator(".message.user")).to_contain_text("across processes")
    expect(second.locator(".message.assistant.streaming")).to_contain_text("word15")
    # A reload on process two mid-reply asks process one for the text so far.
    second.reload()
    second.wait_for_function(CONNECTED)
    expect(second.locator(".message.assistant.streaming")).to_contain_text("word40")
    assert second.locator(".message.assistant .streaming-text").inner_text().startswith("word0 word1")

    # Stop, pressed on process two, reaches the task on process one.
    second.get_by_role("button", name="Stop").click()
    expect(first.locator(".message.assistant.cancelled")).to_be_visible()
    expect(second.locator(".message.assistant.cancelled")).to_be_visible()
    reply = Message.objects.get(role="assistant")
    assert reply.status == "cancelled" and "word40" in reply.content and "word399" not in reply.content
    assert first.locator(".message.assistant .body").inner_text() == second.locator(".message.assistant .body").inner_text()


def test_a_member_deactivated_on_one_process_is_cut_off_in_a_tab_on_another(browser, two_servers, alice, charlie,
                                                                              provider):
    one, two = two_servers
    tab = open_on(browser, one)
    tab.get_by_role("button", name="New chat").first.click()
    tab.wait_for_url(re.compile(r".*/c/\d+/$"))
    tab.wait_for_function(CONNECTED)

    admin = browser.new_page()
    admin.set_default_timeout(15_000)
    log_in(admin, two.url, "charlie", "charlie-password")
    admin.goto(f"{two.url}/admin/auth/user/?q=alice")
    admin.locator("input[name=_selected_action]").first.check()
    admin.locator("select[name=action]").select_option("deactivate")
    admin.get_by_role("button", name="Run").click()
    expect(admin.get_by_text("Deactivated 1")).to_be_visible()

    # The deactivation on process two reaches the socket on process one through Redis.
    expect(tab.locator("#composer-notice")).to_have_text("Your account has been deactivated.")
    tab.get_by_label("Message").fill("still here?")
    tab.get_by_role("button", name="Send").click()
    tab.reload()  # the page itself now leads to the login
    expect(tab).to_have_url(re.compile(r"/accounts/login/"))
    assert not Message.objects.exists()
