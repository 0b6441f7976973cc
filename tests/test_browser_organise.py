"""Organising conversations in a real browser: rename in place, pin, archive and back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Conversation
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def conversation(owner, title: str, days_ago: int) -> Conversation:
    c = Conversation.objects.create(owner=owner, title=title)
    Conversation.objects.filter(pk=c.pk).update(updated_at=timezone.now() - timedelta(days=days_ago))
    return c


def sidebar_titles(page) -> list[str]:
    return page.locator("#conversation-list .conversation-item > a").all_inner_texts()


def test_rename_pin_archive_and_unarchive(page, site_server, alice, provider):
    alpha = conversation(alice, "Alpha", days_ago=3)
    beta = conversation(alice, "Beta", days_ago=0)
    log_in(page, site_server.url, "alice", "alice-password")
    page.goto(f"{site_server.url}/c/{alpha.id}/")
    expect(page.locator("#conversation-list")).to_contain_text("Today")
    assert sidebar_titles(page) == ["Beta", "Alpha"]

    # Rename in the header: the sidebar follows.
    header = page.locator("#chat-header")
    header.get_by_role("button", name="Rename").click()
    box = header.get_by_label("Title")
    expect(box).to_be_focused()
    box.fill("Alpha, renamed")
    header.get_by_role("button", name="Save").click()
    expect(page.locator("#conversation-title")).to_have_text("Alpha, renamed")
    expect(page.locator(f"#conversation-link-{alpha.id}")).to_have_text("Alpha, renamed")

    # Rename in the sidebar, from the item's menu; Enter saves.
    item = page.locator(f"#conversation-{beta.id}")
    item.get_by_label("Options for Beta").click()
    item.get_by_role("button", name="Rename").click()
    item.get_by_label("Title").fill("Beta, renamed")
    item.get_by_label("Title").press("Enter")
    expect(page.locator(f"#conversation-link-{beta.id}")).to_have_text("Beta, renamed")
    expect(page.locator("#conversation-title")).to_have_text("Alpha, renamed")  # the open one is another
    assert Conversation.objects.get(pk=beta.id).title_set_by_member

    # Pin moves it to the top, under "Pinned"; Unpin puts it back.
    header.get_by_role("button", name="Pin").click()
    expect(header.get_by_role("button", name="Unpin")).to_be_visible()
    expect(page.locator("#conversation-list .group-heading").first).to_have_text("Pinned")
    assert sidebar_titles(page) == ["Alpha, renamed", "Beta, renamed"]
    header.get_by_role("button", name="Unpin").click()
    expect(header.get_by_role("button", name="Pin")).to_be_visible()
    expect(page.locator("#conversation-list .group-heading").first).to_have_text("Today")
    assert sidebar_titles(page) == ["Beta, renamed", "Alpha, renamed"]

    # Archive takes it out of the list; it is on /archived/, and Unarchive brings it back.
    header.get_by_role("button", name="Archive").click()
    expect(page.locator(f"#conversation-{alpha.id}")).to_have_count(0)
    expect(header.get_by_role("button", name="Unarchive")).to_be_visible()
    page.goto(f"{site_server.url}/archived/")
    row = page.locator(f"#archived-{alpha.id}")
    expect(row).to_contain_text("Alpha, renamed")
    row.get_by_label("Options for Alpha, renamed").click()
    row.get_by_role("button", name="Unarchive").click()
    expect(row).to_have_count(0)
    expect(page.locator(f"#conversation-link-{alpha.id}")).to_have_text("Alpha, renamed")
    page.reload()
    expect(page.locator(".archived")).to_contain_text("No archived conversations.")
    assert sorted(sidebar_titles(page)) == ["Alpha, renamed", "Beta, renamed"]


def test_the_list_loads_more_as_it_scrolls(page, site_server, alice, provider):
    from conversations.library.listing import PAGE_SIZE

    Conversation.objects.bulk_create([Conversation(owner=alice, title=f"chat {i:03}") for i in range(PAGE_SIZE + 7)])
    log_in(page, site_server.url, "alice", "alice-password")
    items = page.locator("#conversation-list .conversation-item")
    expect(items).to_have_count(PAGE_SIZE)
    page.locator("#conversation-list .more").scroll_into_view_if_needed()
    expect(items).to_have_count(PAGE_SIZE + 7)
    expect(page.locator("#conversation-list .more")).to_have_count(0)
    assert len(set(items.all_inner_texts())) == PAGE_SIZE + 7


def test_export_as_json_then_import_it(page, site_server, alice, provider, tmp_path):
    from conversations.models import Message

    original = conversation(alice, "Exported", days_ago=0)
    Message.objects.create(conversation=original, role="user", content="What is 2 + 2?")
    Message.objects.create(conversation=original, role="assistant", content="4", model="echo")
    log_in(page, site_server.url, "alice", "alice-password")
    page.goto(f"{site_server.url}/c/{original.id}/")
    page.get_by_text("Export", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "exported.json"

    page.get_by_role("link", name="Import conversations").click()
    page.get_by_label("File").set_input_files(saved)
    page.get_by_role("button", name="Import conversations").click()
    expect(page.get_by_role("status")).to_have_text("Imported 1 conversation (2 messages).")
    copy = Conversation.objects.exclude(pk=original.pk).get(owner=alice)
    expect(page.locator(f"#conversation-link-{copy.id}")).to_have_text("Exported")
    page.locator(f"#conversation-link-{copy.id}").click()
    expect(page.locator(".message.assistant")).to_contain_text("4")
    expect(page.locator(".message.user")).to_contain_text("What is 2 + 2?")
