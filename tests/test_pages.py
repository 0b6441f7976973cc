"""The pages: first run, login, the conversation list, one conversation, health."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, Message, Model
from tests.conftest import REDIS, chain

pytestmark = pytest.mark.django_db


def test_a_site_with_no_users_asks_to_create_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/setup/"
    response = client.post("/setup/", {"username": "root", "email": "", "password1": "a-long-pass-phrase",
                                       "password2": "a-long-pass-phrase"})
    assert response.status_code == 302
    admin = get_user_model().objects.get()
    assert admin.is_superuser and admin.is_staff
    assert client.get("/").status_code == 200  # and is logged in


def test_setup_is_closed_once_a_user_exists(client, alice):
    response = client.post("/setup/", {"username": "mallory", "password1": "a-long-pass-phrase",
                                       "password2": "a-long-pass-phrase"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_every_page_needs_a_login(client, alice, conversation):
    for url in ["/", f"/c/{conversation.id}/"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_login_page_logs_in(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    expected = {"status": "ok", "database": "ok"} | ({"redis": "ok"} if REDIS else {})
    assert response.status_code == 200 and response.json() == expected


def test_the_list_shows_my_conversations_newest_first_in_constant_queries(client, alice, bob, provider):
    client.force_login(alice)
    Conversation.objects.create(owner=bob, title="Bob's secret plans")
    for i in range(3):
        Conversation.objects.create(owner=alice, title=f"Alice chat {i}")
    client.get("/")  # the first request of a process also checks that the site has users
    with CaptureQueriesContext(connection) as few:
        page = client.get("/").content.decode()
    assert page.index("Alice chat 2") < page.index("Alice chat 1") < page.index("Alice chat 0")
    assert "Bob&#x27;s secret plans" not in page and "Bob's secret plans" not in page
    for i in range(30):
        Conversation.objects.create(owner=alice, title=f"More {i}")
    with CaptureQueriesContext(connection) as many:
        client.get("/")
    assert len(many) == len(few)


def test_new_chat_creates_a_conversation_with_a_usable_model(client, alice, provider):
    client.force_login(alice)
    response = client.post("/c/new/")
    conversation = Conversation.objects.get(owner=alice)
    assert response["Location"] == f"/c/{conversation.id}/"
    assert conversation.model is not None
    # Pressing it again before writing anything opens the same empty chat.
    assert client.post("/c/new/")["Location"] == f"/c/{conversation.id}/"
    Message.objects.create(conversation=conversation, role="user", content="hi")
    assert client.post("/c/new/")["Location"] != f"/c/{conversation.id}/"


def test_a_conversation_page_has_the_named_controls_and_its_messages(client, alice, conversation):
    client.force_login(alice)
    Message.objects.create(conversation=conversation, role="user", content="What is <b>2+2</b>?")
    Message.objects.create(conversation=conversation, role="assistant", content="**4**")
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert 'aria-label="Message"' in page and ">Send</button>" in page and ">Stop</button>" in page
    assert "New chat" in page
    assert "What is &lt;b&gt;2+2&lt;/b&gt;?" in page  # user text escaped
    assert "<strong>4</strong>" in page  # assistant text rendered
    assert f'ws-connect="/ws/conversations/{conversation.id}/?since=' in page
    for model in Model.objects.all():
        assert f'value="{model.name}"' in page


def test_a_long_conversation_opens_on_its_latest_messages_in_constant_queries(client, alice, conversation):
    client.force_login(alice)
    first = chain(conversation, [Message(role="user", content=f"m{i}") for i in range(10)])
    client.get("/")
    with CaptureQueriesContext(connection) as few:
        client.get(f"/c/{conversation.id}/")
    chain(conversation, [Message(role="user", content=f"n{i}") for i in range(200)], first[-1].pk)
    with CaptureQueriesContext(connection) as many:
        page = client.get(f"/c/{conversation.id}/").content.decode()
    assert len(many) == len(few)
    assert ">n199<" in page and ">n150<" in page and ">n149<" not in page
    assert 'hx-trigger="intersect once"' in page
    first_shown = conversation.messages.get(content="n150")
    earlier = client.get(f"/c/{conversation.id}/?before={first_shown.id}", HTTP_HX_REQUEST="true").content.decode()
    assert ">n149<" in earlier and ">n100<" in earlier and ">n150<" not in earlier
    assert "<html" not in earlier


def test_nobody_opens_or_deletes_another_users_conversation(client, bob, conversation):
    client.force_login(bob)
    assert client.get(f"/c/{conversation.id}/").status_code == 404
    assert client.post(f"/c/{conversation.id}/delete/").status_code == 404
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_deleting_my_conversation(client, alice, conversation):
    client.force_login(alice)
    assert client.post(f"/c/{conversation.id}/delete/").status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_a_stale_streaming_reply_shows_as_interrupted_on_the_page(client, alice, conversation):
    client.force_login(alice)
    message = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="half")
    Message.objects.filter(pk=message.pk).update(updated_at=message.updated_at.replace(year=2020))
    page = client.get(f"/c/{conversation.id}/").content.decode()
    message.refresh_from_db()
    assert message.status == "interrupted"
    assert "Regenerate" in page and "half" in page


@pytest.mark.parametrize("query", ["before=" + "9" * 5000, "before=99999999999999999999", "before=9223372036854775807",
                                   "before=²", "before=-3", "before=", "around=" + "9" * 5000, "around=²",
                                   "around=99999999999999999999"])
def test_hand_made_numbers_in_a_conversation_url_are_ignored_or_clamped(client, alice, conversation, query):
    client.force_login(alice)
    chain(conversation, [Message(role="user", content=f"m{i}") for i in range(3)])
    for htmx in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = client.get(f"/c/{conversation.id}/?{query}", **htmx)
        assert response.status_code == 200
        assert ">m2<" in response.content.decode()  # "before" a number past every id: the latest messages


@pytest.mark.parametrize("page", ["9" * 5000, "99999999999999999999", "²", "-1", "0", "x"])
def test_hand_made_page_numbers_in_search_are_ignored_or_clamped(client, alice, conversation, page):
    client.force_login(alice)
    Message.objects.create(conversation=conversation, role="user", content="findable words")
    response = client.get(f"/search/?q=findable&page={page}")
    assert response.status_code == 200
