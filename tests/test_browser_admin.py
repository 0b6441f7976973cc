"""The admin in a real browser: a key is created, seen once, works on /v1, is revoked, stops."""

from __future__ import annotations

import re

import httpx2 as httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def call(server, secret: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, timeout=20)


def test_an_admin_gives_a_key_then_revokes_it(page, site_server, charlie, alice, provider):
    log_in(page, site_server.url, "charlie", "charlie-password")
    page.goto(f"{site_server.url}/admin/")
    page.get_by_role("link", name="API keys").first.click()
    page.get_by_role("link", name=re.compile("Add API key")).click()
    page.locator(".field-owner .select2-selection").click()  # the owner is picked by autocomplete
    page.locator(".select2-search__field").fill("ali")
    page.locator(".select2-results__option", has_text="alice").click()
    page.get_by_label("Name:").fill("alice's laptop")
    page.get_by_label("Rpm:").fill("30")
    page.get_by_role("button", name="Save", exact=True).click()

    secret = page.get_by_label("New API key").input_value()
    assert re.fullmatch(r"cs-[0-9a-f]{8}_\S+", secret)
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    page.goto(f"{site_server.url}/admin/conversations/apikey/")
    expect(page.get_by_text("alice's laptop")).to_be_visible()
    assert secret not in page.content()  # never twice

    response = call(site_server, secret)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Echo: hi"

    page.goto(f"{site_server.url}/admin/conversations/apikey/")
    page.locator("input[name=_selected_action]").first.check()
    page.locator("select[name=action]").select_option("revoke")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_text("Revoked.")).to_be_visible()
    response = call(site_server, secret)
    assert response.status_code == 401 and response.json()["error"]["code"] == "revoked_api_key"
