"""Deactivating a member in the admin closes their chat in a tab served by another process (Redis)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from tests.conftest import REDIS, log_in
from tests.live import Server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS, reason="needs REDIS_URL: the PostgreSQL+Redis pass runs it"),
]

CONNECTED = "() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1"


@pytest.fixture
def admin_server(django_db_blocker):
    """A second server process, where the admin works."""
    with django_db_blocker.unblock():
        server = Server()
        try:
            yield server.start()
        finally:
            server.stop()


def test_a_member_deactivated_on_one_process_is_cut_off_in_a_tab_on_another(
        browser, site_server, admin_server, alice, charlie, provider):
    tab = browser.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, site_server.url, "alice", "alice-password")
    tab.get_by_role("button", name="New chat").first.click()
    tab.wait_for_url(re.compile(r".*/c/\d+/$"))
    tab.wait_for_function(CONNECTED)

    admin = browser.new_page()
    admin.set_default_timeout(15_000)
    log_in(admin, admin_server.url, "charlie", "charlie-password")
    admin.goto(f"{admin_server.url}/admin/auth/user/?q=alice")
    admin.locator("input[name=_selected_action]").first.check()
    admin.locator("select[name=action]").select_option("deactivate")
    admin.get_by_role("button", name="Run").click()
    expect(admin.get_by_text("Deactivated 1")).to_be_visible()

    expect(tab.locator("#composer-notice")).to_have_text("Your account has been deactivated.")
    tab.get_by_label("Message").fill("still here?")
    tab.get_by_role("button", name="Send").click()
    tab.reload()  # the page itself now leads to the login
    expect(tab).to_have_url(re.compile(r"/accounts/login/"))
    assert not Message.objects.exists()
    tab.close()
    admin.close()
