"""Import and export in a real browser: the form on /settings/, and the zip of all one's data."""

from __future__ import annotations

import json
import zipfile

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tests.conftest import log_in
from tests.test_transfer import CHATGPT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def json_file(document, name: str = "conversations.json") -> dict:
    return {"name": name, "mimeType": "application/json", "buffer": json.dumps(document).encode()}


def test_import_conversations_from_settings(page, site_server, alice, provider):
    log_in(page, site_server.url, "alice", "alice-password")
    page.get_by_role("link", name="Import conversations").click()  # the sidebar's link
    expect(page).to_have_url(f"{site_server.url}/settings/#your-data")
    form = page.locator("#your-data")

    # A bad file: the error by the form, nothing imported, and the form there to try again.
    form.get_by_label("File").set_input_files(json_file({"something": "else"}))
    form.get_by_role("button", name="Import conversations").click()
    expect(form.get_by_role("alert")).to_contain_text("Conversation 1 in that file cannot be read")
    assert not Conversation.objects.exists()

    page.locator("#your-data").get_by_label("File").set_input_files(json_file(CHATGPT))
    page.locator("#your-data").get_by_role("button", name="Import conversations").click()
    expect(page.locator("#your-data").get_by_role("status")).to_have_text("Imported 1 conversation (4 messages).")
    imported = Conversation.objects.get(owner=alice)

    # It is in the list, and the report's link opens it on the branch ChatGPT was showing, its
    # other version a click away.
    expect(page.locator(f"#conversation-link-{imported.pk}")).to_have_text("Weekend plans")
    page.locator("#your-data").get_by_role("link", name="Weekend plans").click()
    expect(page.locator(".message.assistant").last).to_contain_text("Bike, then swim.")
    expect(page.locator(".version-count").last).to_have_text("2 / 2")
    page.get_by_role("button", name="Previous version").last.click()
    expect(page.locator(".message.assistant").last).to_contain_text("In the hills.")
    assert imported.messages.count() == 4


def test_export_all_data_downloads_a_zip_of_ones_conversations(page, site_server, alice, bob, provider):
    mine = Conversation.objects.create(owner=alice, title="Lisbon in spring")
    Message.objects.create(conversation=mine, role="user", content="Plan a trip")
    theirs = Conversation.objects.create(owner=bob, title="Bob's plans")
    Message.objects.create(conversation=theirs, role="user", content="Bob's secret")
    log_in(page, site_server.url, "alice", "alice-password")
    page.goto(f"{site_server.url}/settings/")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export all data").click()
    download = download_info.value
    assert download.suggested_filename.startswith("chatsite-alice-") and download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(download.path()) as zipped:
        assert zipped.namelist() == [f"{mine.pk}-lisbon-in-spring.json"]
        document = json.loads(zipped.read(zipped.namelist()[0]))
    assert document["title"] == "Lisbon in spring"
    assert [m["content"] for m in document["messages"]] == ["Plan a trip"]
