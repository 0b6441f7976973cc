"""Organising conversations: the grouped, paged list, rename, pin, archive, and the automatic title."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.chat.replies import RUNNING
from conversations.gateway import usage
from conversations.library import listing
from conversations.models import Conversation, UsageRecord
from tests.wsclient import Tab

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}


def make(owner, title: str, at: datetime, **flags) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, **flags)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=at)  # auto_now is not settable
    return conversation


def headings_and_titles(page: listing.Page) -> list[tuple[str, str]]:
    return [(entry.heading, entry.conversation.title) for entry in page.entries]


@pytest.mark.django_db
def test_the_list_is_grouped_by_day_with_pinned_first(alice, settings):
    settings.TIME_ZONE = "UTC"
    make(alice, "older", NOW - timedelta(days=31))
    make(alice, "thirty days", NOW - timedelta(days=30))
    make(alice, "eight days", NOW - timedelta(days=8))
    make(alice, "seven days", NOW - timedelta(days=7))
    make(alice, "yesterday late", NOW.replace(hour=0) - timedelta(seconds=1))
    make(alice, "today early", NOW.replace(hour=0))
    make(alice, "pinned old", NOW - timedelta(days=400), pinned=True)
    make(alice, "archived", NOW, archived=True)

    page = listing.page(alice, now=NOW)
    assert headings_and_titles(page) == [
        ("Pinned", "pinned old"),
        ("Today", "today early"),
        ("Yesterday", "yesterday late"),
        ("Previous 7 days", "seven days"),
        ("Previous 30 days", "eight days"),
        ("", "thirty days"),
        ("Older", "older"),
    ]
    assert page.next is None
    archived = listing.page(alice, archived=True, now=NOW)
    assert headings_and_titles(archived) == [("Today", "archived")]


@pytest.mark.django_db
def test_the_groups_follow_the_sites_time_zone(alice, settings):
    settings.TIME_ZONE = "America/New_York"  # 12:00 UTC is 07:00 there; 03:00 UTC is yesterday there
    make(alice, "small hours", NOW.replace(hour=3))
    assert headings_and_titles(listing.page(alice, now=NOW)) == [("Yesterday", "small hours")]


@pytest.mark.django_db
def test_pages_follow_on_without_repeating_a_heading_or_a_conversation(alice, bob):
    for i in range(7):
        make(alice, f"today {i}", NOW - timedelta(minutes=i))
    make(alice, "pinned a", NOW - timedelta(days=2), pinned=True)
    make(alice, "pinned b", NOW - timedelta(days=3), pinned=True)
    make(alice, "older", NOW - timedelta(days=90))
    make(bob, "bob's", NOW)

    seen, after = [], None
    while True:
        page = listing.page(alice, after=after, now=NOW, size=3)
        seen += headings_and_titles(page)
        if page.next is None:
            break
        # The cursor travels through the page's URL and back.
        after = listing.Cursor.from_query({k: str(v) for k, v in page.next.query().items()})
    assert seen == [("Pinned", "pinned a"), ("", "pinned b"), ("Today", "today 0")] + [
        ("", f"today {i}") for i in range(1, 7)] + [("Older", "older")]


@pytest.mark.django_db
def test_a_page_of_the_list_takes_the_same_queries_however_many_conversations(client, alice):
    client.force_login(alice)
    client.get("/")  # what a process does once (its first request) is not counted

    def queries_for_pages(count: int) -> list[int]:
        Conversation.objects.filter(owner=alice).delete()
        Conversation.objects.bulk_create(
            [Conversation(owner=alice, title=f"c{i}", pinned=i % 10 == 0) for i in range(count)])
        counts = []
        with CaptureQueriesContext(connection) as index:
            assert client.get("/").status_code == 200
        counts.append(len(index))
        page = listing.page(alice)
        with CaptureQueriesContext(connection) as following:
            response = client.get(f"/conversations/?{page.next_query()}", **HTMX)
            assert response.status_code == 200 and response.content.count(b'class="conversation-item') == listing.PAGE_SIZE
        counts.append(len(following))
        return counts

    assert queries_for_pages(120) == queries_for_pages(600)


@pytest.mark.django_db
def test_the_sidebar_loads_more_as_it_scrolls(client, alice):
    client.force_login(alice)
    Conversation.objects.bulk_create([Conversation(owner=alice, title=f"c{i}") for i in range(listing.PAGE_SIZE + 5)])
    html = client.get("/").content.decode()
    assert html.count('class="conversation-item') == listing.PAGE_SIZE
    assert 'hx-trigger="intersect once"' in html and 'href="/conversations/?pinned=0&amp;updated=' in html.replace("hx-get", "href")
    page = listing.page(alice)
    rest = client.get(f"/conversations/?{page.next_query()}", **HTMX).content.decode()
    assert rest.count('class="conversation-item') == 5 and "intersect once" not in rest
    assert client.get("/conversations/?id=1&updated=yesterday", **HTMX).status_code == 400


@pytest.mark.django_db
def test_rename_in_place_from_the_header_updates_the_sidebar_too(client, alice, conversation):
    client.force_login(alice)
    url = f"/c/{conversation.id}/rename/"
    box = client.get(url + "?in=header", **HTMX).content.decode()
    assert 'aria-label="Title"' in box and 'id="chat-header"' in box and ">Save<" in box

    response = client.post(url, {"in": "header", "title": "  Trip   to Lisbon "}, **HTMX,
                           HTTP_HX_CURRENT_URL=f"http://testserver/c/{conversation.id}/")
    html = response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_set_by_member) == ("Trip to Lisbon", True)
    assert '<h1 id="conversation-title">Trip to Lisbon</h1>' in html
    assert f'<li id="conversation-{conversation.id}" class="conversation-item" hx-swap-oob="true">' in html
    assert 'aria-current="page">Trip to Lisbon</a>' in html


@pytest.mark.django_db
def test_rename_from_the_sidebar_leaves_another_conversations_header_alone(client, alice, conversation):
    other = Conversation.objects.create(owner=alice, title="Other")
    client.force_login(alice)
    html = client.post(f"/c/{conversation.id}/rename/", {"in": "sidebar", "title": "Renamed"}, **HTMX,
                       HTTP_HX_CURRENT_URL=f"http://testserver/c/{other.id}/").content.decode()
    assert html.lstrip().startswith(f'<li id="conversation-{conversation.id}"') and "chat-header" not in html
    assert ">Renamed</a>" in html


@pytest.mark.django_db
def test_an_empty_title_is_refused_in_place(client, alice, conversation):
    client.force_login(alice)
    html = client.post(f"/c/{conversation.id}/rename/", {"in": "header", "title": "   "}, **HTMX).content.decode()
    assert "A title cannot be empty." in html and 'aria-label="Title"' in html
    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_set_by_member) == ("New chat", False)


@pytest.mark.django_db
def test_pin_puts_it_first_and_unpin_puts_it_back(client, alice):
    first = make(alice, "recent", NOW)
    second = make(alice, "old", NOW - timedelta(days=3))
    client.force_login(alice)
    html = client.post(f"/c/{second.id}/organise/", {"action": "pin"}, **HTMX,
                       HTTP_HX_CURRENT_URL=f"http://testserver/c/{second.id}/").content.decode()
    assert html.index(f'id="conversation-{second.id}"') < html.index(f'id="conversation-{first.id}"')
    assert "<h2>Pinned</h2>" in html and ">Unpin<" in html and 'id="chat-header"' in html
    second.refresh_from_db()
    assert second.pinned and second.updated_at == NOW - timedelta(days=3)  # not activity: it keeps its day

    html = client.post(f"/c/{second.id}/organise/", {"action": "unpin"}, **HTMX).content.decode()
    assert html.index(f'id="conversation-{first.id}"') < html.index(f'id="conversation-{second.id}"')
    assert "<h2>Pinned</h2>" not in html and "chat-header" not in html  # not asked from its page


@pytest.mark.django_db
def test_archive_takes_it_out_of_the_list_onto_archived_and_back(client, alice):
    kept = make(alice, "kept", NOW)
    gone = make(alice, "to archive", NOW, pinned=True)
    client.force_login(alice)
    html = client.post(f"/c/{gone.id}/organise/", {"action": "archive"}, **HTMX).content.decode()
    assert f'id="conversation-{gone.id}"' not in html and f'id="conversation-{kept.id}"' in html
    gone.refresh_from_db()
    assert gone.archived and not gone.pinned
    assert "to archive" not in client.get("/").content.decode()
    archived = client.get("/archived/").content.decode()
    assert f'id="archived-{gone.id}"' in archived and ">Unarchive<" in archived and f'id="archived-{kept.id}"' not in archived

    html = client.post(f"/c/{gone.id}/organise/", {"action": "unarchive"}, **HTMX).content.decode()
    assert f'<li id="archived-{gone.id}" hx-swap-oob="delete">' in html and f'id="conversation-{gone.id}"' in html
    assert "No archived conversations." in client.get("/archived/").content.decode()


@pytest.mark.django_db
def test_without_javascript_the_forms_still_work(client, alice, conversation):
    client.force_login(alice)
    assert client.post(f"/c/{conversation.id}/organise/", {"action": "archive"})["Location"] == "/archived/"
    assert client.post(f"/c/{conversation.id}/rename/", {"title": "Plain"})["Location"] == f"/c/{conversation.id}/"
    response = client.post(f"/c/{conversation.id}/delete/", {"next": "/archived/"})
    assert response["Location"] == "/archived/" and not Conversation.objects.exists()


@pytest.mark.django_db
def test_nobody_organises_another_members_conversation(client, alice, bob, conversation):
    client.force_login(bob)
    url = f"/c/{conversation.id}/"
    assert client.get(url + "rename/?in=header", **HTMX).status_code == 404
    assert client.post(url + "rename/", {"title": "mine now"}, **HTMX).status_code == 404
    for action in ("pin", "unpin", "archive", "unarchive"):
        assert client.post(url + "organise/", {"action": action}, **HTMX).status_code == 404
    assert client.post(url + "delete/").status_code == 404
    conversation.archived = True
    conversation.save(update_fields=["archived"])
    assert f"conversation-{conversation.id}" not in client.get("/").content.decode()
    assert f"archived-{conversation.id}" not in client.get("/archived/").content.decode()
    conversation.refresh_from_db()
    assert (conversation.title, conversation.pinned, conversation.archived) == ("New chat", False, True)
    assert client.post(f"/c/{conversation.id}/organise/", {"action": "dance"}).status_code == 404


# -- the automatic title, through the loopback upstream


async def wait_for_idle(timeout: float = 30.0) -> None:
    """Until no reply (and its title) is being written in this process."""
    deadline = time.monotonic() + timeout
    while RUNNING:
        assert time.monotonic() < deadline, "the reply did not finish"
        await asyncio.sleep(0.02)


async def first_exchange(user, conversation, text: str, *, until=None) -> list[str]:
    """Send, read the reply (and the frames `until` one matches), wait for the title's request."""
    tab = Tab(user, conversation.id)
    assert await tab.connect()
    await tab.send(message=text, model="echo")
    frames = await tab.read_reply()
    if until:
        frames += await tab.read_until(until)
    await wait_for_idle()
    await tab.close()
    await usage.flush()
    return frames


@pytest.mark.django_db(transaction=True)
async def test_after_the_first_reply_a_model_writes_the_title(alice, conversation, upstream, settings):
    settings.CHAT_AUTO_TITLE = True
    frames = await first_exchange(alice, conversation, "Plan a trip to Lisbon in spring",
                                  until=lambda f: '<h1 id="conversation-title" hx-swap-oob="true">Echo:' in f)
    await conversation.arefresh_from_db()
    assert conversation.title == "Echo: Plan a trip to Lisbon in spring"  # the echo model's answer, first line
    assert not conversation.title_set_by_member
    asked = upstream.requests_for("echo")[-1]["body"]
    assert asked["stream"] is False and asked["messages"][0]["role"] == "system"
    assert asked["messages"][1]["content"].startswith("Plan a trip to Lisbon in spring\n\nEcho: Plan")
    assert f'<a id="conversation-link-{conversation.id}" href="/c/{conversation.id}/" aria-current="page" hx-swap-oob="true">Echo: Plan' in frames[-1]
    rows = [r async for r in UsageRecord.objects.filter(source="title")]
    assert [(r.user_id, r.model_name, r.status, r.session_id) for r in rows] == [
        (alice.id, "echo", "ok", f"conversation-{conversation.id}")]
    assert rows[0].completion_tokens > 0

    # Only after the first reply.
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="and in summer?", model="echo")
    await tab.read_until(lambda f: "Echo: and in summer?" in f and "complete" in f)
    await wait_for_idle()
    await tab.close()
    await usage.flush()
    assert await UsageRecord.objects.filter(source="title").acount() == 1


@pytest.mark.parametrize(("title_model", "title", "status"), [
    ("slow", "Echo: Plan a trip to Lisbon in spring", "ok"),  # CHAT_TITLE_MODEL is the one asked
    ("fail-500", "Plan a trip to Lisbon in spring", "error"),  # it fails: the first words stay
])
@pytest.mark.django_db(transaction=True)
async def test_the_title_model_setting_and_its_failure(alice, conversation, upstream, settings, title_model, title, status):
    settings.CHAT_AUTO_TITLE = True
    settings.CHAT_TITLE_MODEL = title_model
    await first_exchange(alice, conversation, "Plan a trip to Lisbon in spring")
    await conversation.arefresh_from_db()
    assert conversation.title == title
    assert len(upstream.requests_for(title_model)) == 1
    row = await UsageRecord.objects.aget(source="title")
    assert (row.model_name, row.status, row.user_id) == (title_model, status, alice.id)


@pytest.mark.django_db(transaction=True)
async def test_a_title_the_member_set_is_never_overwritten(alice, conversation, upstream, settings):
    settings.CHAT_AUTO_TITLE = True
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="My own title", title_set_by_member=True)
    await conversation.arefresh_from_db()
    await first_exchange(alice, conversation, "Plan a trip to Lisbon in spring")
    await conversation.arefresh_from_db()
    assert conversation.title == "My own title"
    assert [r["body"]["stream"] for r in upstream.requests_for("echo")] == [True]  # the reply only
    assert not await UsageRecord.objects.filter(source="title").aexists()


@pytest.mark.django_db(transaction=True)
async def test_a_new_chat_renamed_before_its_first_message_keeps_its_name(alice, conversation, settings):
    settings.CHAT_AUTO_TITLE = True
    tab = Tab(alice, conversation.id)
    assert await tab.connect()  # the tab's conversation was loaded before the rename
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="Named first", title_set_by_member=True)
    await tab.send(message="Plan a trip to Lisbon in spring", model="echo")
    frames = await tab.read_reply()
    await wait_for_idle()
    await tab.close()
    await conversation.arefresh_from_db()
    assert conversation.title == "Named first"
    assert any('<h1 id="conversation-title" hx-swap-oob="true">Named first</h1>' in f for f in frames)


@pytest.mark.django_db(transaction=True)
async def test_a_rename_while_the_title_is_written_wins(alice, conversation, upstream, settings):
    """The title is written only where the member has not set one, in one statement."""
    from conversations.library import titles

    settings.CHAT_AUTO_TITLE = True
    await first_exchange(alice, conversation, "first question")
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="Renamed meanwhile", title_set_by_member=True)
    reply = await conversation.messages.filter(role="assistant").afirst()
    await titles.name_after_first_reply(conversation, reply, alice)
    await conversation.arefresh_from_db()
    assert conversation.title == "Renamed meanwhile"


def test_a_models_answer_becomes_a_clean_title():
    from conversations.library.titles import from_model_output

    assert from_model_output('"Trip to Lisbon."\n\nMore words') == "Trip to Lisbon"
    assert from_model_output("**Title: Spring in Lisbon**") == "Spring in Lisbon"
    assert from_model_output("word " * 40).endswith("…") and len(from_model_output("word " * 40)) == 60
    assert from_model_output("") == ""



@pytest.mark.django_db
def test_new_chat_does_not_reuse_an_archived_empty_one(client, alice):
    archived = Conversation.objects.create(owner=alice, archived=True)
    client.force_login(alice)
    response = client.post("/c/new/")
    assert response["Location"] != archived.get_absolute_url()
    assert Conversation.objects.filter(owner=alice, archived=False).count() == 1
