"""Sharing a conversation read-only inside the team: the rule (who may read), every door walked
as a member it was not shared with, as nobody, and as a reader; Share, Stop sharing, Continue in
my chats, Shared with me."""

from __future__ import annotations

import html
import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser, Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver

from conversations.models import Conversation, Message, Share
from conversations.routing import websocket_urlpatterns
from conversations.sharing import access, actions
from tests.conftest import chain
from tests.test_websocket_security import session_cookie, tab

HTMX = {"HTTP_HX_REQUEST": "true"}
SECRETS = ("Zebra plans", "kumquat")  # the title and a word of a message: never shown to others


@pytest.fixture
def carol(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("carol", "carol@example.com", "carol-password")


@pytest.fixture
def secret(conversation):
    """alice's conversation, with a question and its reply."""
    conversation.title = SECRETS[0]
    conversation.save(update_fields=["title"])
    chain(conversation, [Message(role="user", content="the word is kumquat"),
                         Message(role="assistant", content="Echo: the word is kumquat", model="echo")])
    return conversation


def shared_with(conversation, *, everyone=False, users=(), groups=()):
    return actions.share(conversation, everyone=everyone, users=users, groups=groups)


def readable(user, conversation) -> bool:
    return access.can_read(user, conversation.id)


# -- the rule


@pytest.mark.django_db
def test_the_owner_reads_their_own_and_nobody_else_does(alice, bob, secret):
    assert readable(alice, secret)
    assert not readable(bob, secret)
    assert not readable(AnonymousUser(), secret)
    assert not readable(None, secret)


@pytest.mark.django_db
def test_shared_with_everyone_every_active_member_reads_it(alice, bob, carol, secret):
    shared_with(secret, everyone=True)
    assert readable(bob, secret) and readable(carol, secret) and readable(alice, secret)
    assert not readable(AnonymousUser(), secret)


@pytest.mark.django_db
def test_shared_with_a_member_only_they_read_it(alice, bob, carol, secret):
    shared_with(secret, users=[bob])
    assert readable(bob, secret)
    assert not readable(carol, secret)


@pytest.mark.django_db
def test_shared_with_a_group_its_members_read_it_while_they_are_in_it(alice, bob, carol, secret):
    research = Group.objects.create(name="Research")
    bob.groups.add(research)
    Group.objects.create(name="Sales").user_set.add(carol)
    shared_with(secret, groups=[research])
    assert readable(bob, secret)
    assert not readable(carol, secret)
    bob.groups.remove(research)
    assert not readable(bob, secret)


@pytest.mark.django_db
def test_a_deactivated_member_reads_nothing_not_even_their_own(alice, bob, secret):
    shared_with(secret, everyone=True)
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    assert not readable(bob, secret)
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert not readable(alice, secret)


@pytest.mark.django_db
def test_the_rule_is_one_query_and_lists_each_conversation_once(alice, bob, secret):
    team = Group.objects.create(name="Team")
    bob.groups.add(team)
    shared_with(secret, everyone=True, users=[bob], groups=[team])  # every way at once
    with CaptureQueriesContext(connection) as queries:
        found = list(Conversation.objects.readable_by(bob))
    assert found == [secret] and len(queries) == 1
    assert list(Conversation.objects.shared_with(bob)) == [secret]
    assert list(Conversation.objects.shared_with(alice)) == []


@pytest.mark.django_db
def test_new_chat_does_not_reuse_an_empty_conversation_that_is_shared(client, alice, bob, conversation):
    shared_with(conversation, everyone=True)
    client.force_login(alice)
    new = Conversation.objects.get(pk=int(client.post("/c/new/")["Location"].split("/")[2]))
    assert new != conversation and not Share.objects.filter(conversation=new).exists()
    assert client.post("/c/new/")["Location"] == new.get_absolute_url()  # an unshared one is reused


@pytest.mark.django_db
def test_sharing_with_nobody_is_not_sharing(alice, bob, secret):
    shared_with(secret, users=[bob])
    assert shared_with(secret) is None
    assert not Share.objects.exists() and not readable(bob, secret)


# -- every door, walked


def url_patterns(patterns=None, prefix: str = ""):
    """Every URL pattern of the site: (route, name, pattern), includes walked."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name, entry


CONVERSATION_ROUTE = re.compile(r"^c/<int:pk>/")
# Routes with an id that is not a conversation's, and why they are safe (a new route with an id
# fails test_every_route_with_an_id_is_known until it is walked below or listed here).
OTHER_IDS = {
    "local-model/<int:pk>/label/": "a model's label in the picker (models usable by the member)",
    "settings/keys/<int:pk>/revoke/": "an API key of the member's own",
    "attachments/<int:pk>/": "an attachment: walked in test_attachments_follow_the_rule",
    "attachments/<int:pk>/thumbnail/": "an attachment's thumbnail: the same",
    "attachments/<int:pk>/remove/": "an attachment in the owner's message box: the same",
}
SAMPLES = {"fmt": ["md", "json"]}  # the values a route's other parts take


def conversation_urls(conversation_id: int) -> list[tuple[str, str]]:
    """(url name, url) for every route that takes a conversation id, with each sample value."""
    urls = []
    for route, name, _ in url_patterns():
        if not CONVERSATION_ROUTE.match(route):
            continue
        variants = [route.replace("<int:pk>", str(conversation_id))]
        for part, values in SAMPLES.items():
            marker = f"<str:{part}>"
            variants = [v.replace(marker, value) for v in variants for value in values] if marker in route else variants
        assert all("<" not in v for v in variants), f"add a sample value for {route!r} to SAMPLES"
        urls += [(name, "/" + v) for v in variants]
    return urls


@pytest.mark.django_db
def test_every_route_with_an_id_is_known():
    with_ids = {route for route, _, _ in url_patterns() if "<int:" in route and not route.startswith("admin/")}
    assert with_ids - set(OTHER_IDS) - {r for r in with_ids if CONVERSATION_ROUTE.match(r)} == set()
    names = {name for name, _ in conversation_urls(1)}
    assert {"conversation", "export_conversation", "delete_conversation", "rename_conversation",
            "organise_conversation", "share_conversation", "continue_conversation"} <= names


def requests_for(conversation: Conversation) -> list[tuple[str, str, str, dict, dict]]:
    """Every way to ask a conversation's routes: (name, method, url, data, headers)."""
    message = conversation.messages.order_by("id").first()
    posts = [{"title": "Taken over", "action": "archive", "everyone": "on", "in": "header"},
             {"action": "pin", "stop": "1", "next": "/"}]
    asked = []
    for name, url in conversation_urls(conversation.id):
        for query in ("", "?before=999999", f"?around={message.id}", "?in=sidebar", "?close=1"):
            for headers in ({}, HTMX):
                asked.append((name, "get", url + query, {}, headers))
        for data in posts:
            for headers in ({}, HTMX):
                asked.append((name, "post", url, data, headers))
    return asked


def state_of(conversation: Conversation) -> tuple:
    conversation = Conversation.objects.filter(pk=conversation.pk).first()
    if conversation is None:
        return ("deleted",)
    share = Share.objects.filter(conversation=conversation).first()
    return (conversation.title, conversation.pinned, conversation.archived, conversation.current_leaf_id,
            conversation.messages.count(), share and (share.everyone, sorted(share.users.values_list("pk", flat=True))))


def assert_nothing_leaks(response, where: str) -> None:
    body = response.content.decode(errors="replace")
    assert response.status_code in (302, 404, 405), (where, response.status_code)
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/login/"), (where, response["Location"])
    for word in SECRETS:
        assert word not in body, (where, word)


@pytest.mark.django_db
def test_a_member_it_is_not_shared_with_and_nobody_logged_out_get_nothing_anywhere(client, alice, bob, carol, secret):
    shared_with(secret, users=[carol])  # shared, but not with bob
    before = state_of(secret)
    bob_client = Client()
    bob_client.force_login(bob)
    for who, asking in (("bob", bob_client), ("nobody", Client())):
        for _name, method, url, data, headers in requests_for(secret):
            response = getattr(asking, method)(url, data, **headers)
            assert_nothing_leaks(response, f"{who} {method} {url} {data} {headers}")
        assert state_of(secret) == before
        assert not Conversation.objects.filter(owner=bob).exists()  # nothing copied either
    # Nor anywhere else: search, the sidebar, Shared with me, the list's pages.
    for url in ("/", "/search/?q=kumquat", "/search/?q=Zebra", "/shared/", "/conversations/", "/archived/"):
        for headers in ({}, HTMX):
            body = bob_client.get(url, **headers).content.decode()
            asked = url.partition("q=")[2]  # a search shows its own words back, of course
            assert not [w for w in (*SECRETS, f"/c/{secret.id}/") if w not in asked and w in body], url


READ_PATHS = {("conversation", "get"), ("export_conversation", "get"), ("continue_conversation", "post")}


@pytest.mark.django_db
def test_a_reader_may_only_read(alice, bob, secret):
    shared_with(secret, users=[bob])
    before = state_of(secret)
    reader = Client()
    reader.force_login(bob)
    worked = set()
    for name, method, url, data, headers in requests_for(secret):
        response = getattr(reader, method)(url, data, **headers)
        where = f"{method} {url} {data} {headers}"
        if (name, method) in READ_PATHS:
            assert response.status_code in (200, 302), where
            worked.add((name, method))
        else:
            assert_nothing_leaks(response, where)
        assert state_of(secret) == before, where
    assert worked == READ_PATHS
    # The search result's ?around=<id> did not move the owner's branch; the copies are bob's own.
    assert set(Conversation.objects.filter(owner=bob).values_list("title", flat=True)) == {SECRETS[0]}


@pytest.mark.django_db
def test_the_reader_sees_it_without_the_message_box_and_with_who_shared_it(client, alice, bob, secret):
    alice.first_name, alice.last_name = "Alice", "Liddell"
    alice.save()
    shared_with(secret, everyone=True)
    client.force_login(bob)
    page = client.get(f"/c/{secret.id}/").content.decode()
    assert "kumquat" in page and SECRETS[0] in page
    assert "Shared by Alice Liddell" in page and "Continue in my chats" in page
    assert 'aria-label="Message"' not in page and 'id="composer"' not in page
    for owner_only in (">Rename<", ">Pin<", ">Archive<", ">Delete<", ">Share<", ">Stop<", ">Send<"):
        assert owner_only not in page, owner_only
    assert 'class="chat read-only"' in page  # and the messages' Edit, Regenerate: see app.css
    # Its exports, as the owner's.
    exported = client.get(f"/c/{secret.id}/export.md")
    assert exported.status_code == 200 and "kumquat" in exported.content.decode()
    # Earlier messages load for the reader too.
    first = secret.messages.order_by("id").last()
    assert client.get(f"/c/{secret.id}/?before={first.id}", **HTMX).status_code == 200


@pytest.mark.django_db
def test_stop_sharing_takes_effect_on_the_next_request(client, alice, bob, secret):
    client.force_login(alice)
    response = client.post(f"/c/{secret.id}/share/", {"users": [bob.pk]}, **HTMX)
    assert response.status_code == 200 and "Shared with bob." in response.content.decode()
    reader = Client()
    reader.force_login(bob)
    assert reader.get(f"/c/{secret.id}/").status_code == 200
    assert SECRETS[0] in reader.get("/shared/").content.decode()

    response = client.post(f"/c/{secret.id}/share/", {"stop": "1"}, **HTMX)
    assert "Not shared any more" in response.content.decode()
    assert reader.get(f"/c/{secret.id}/").status_code == 404
    assert reader.get(f"/c/{secret.id}/export.json").status_code == 404
    assert SECRETS[0] not in reader.get("/shared/").content.decode()


@pytest.mark.django_db
def test_the_share_panel_shows_the_choices_and_keeps_what_is_chosen(client, alice, bob, carol, secret):
    research = Group.objects.create(name="Research")
    client.force_login(alice)
    assert '<span id="share-state" class="share-state muted"></span>' in client.get(f"/c/{secret.id}/").content.decode()
    panel = client.get(f"/c/{secret.id}/share/", **HTMX).content.decode()
    assert "Everyone in the team" in panel and ">Members<" in panel and ">Groups<" in panel
    assert " bob</label>" in panel and " carol</label>" in panel and "alice</label>" not in panel
    assert "Not shared: only you can open it." in panel and "Stop sharing" not in panel

    saved = client.post(f"/c/{secret.id}/share/", {"users": [carol.pk], "groups": [research.pk]}, **HTMX).content.decode()
    assert "Shared with carol, the group Research." in saved and "Stop sharing" in saved
    assert 'id="share-state" class="share-state muted" hx-swap-oob="true">Shared<' in saved
    again = client.get(f"/c/{secret.id}/share/", **HTMX).content.decode()
    assert re.search(rf'value="{carol.pk}"[^>]*checked', again) and not re.search(rf'value="{bob.pk}"[^>]*checked', again)

    # A member who is no longer there: a clear error in place, nothing changed.
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    refused = client.post(f"/c/{secret.id}/share/", {"users": [bob.pk]}, **HTMX)
    assert "Members: Select a valid choice" in refused.content.decode()
    assert list(secret.share.users.all()) == [carol]

    everyone = client.post(f"/c/{secret.id}/share/", {"everyone": "on"}, **HTMX).content.decode()
    assert "Shared with everyone in the team." in everyone
    assert "Cancel" in everyone and client.get(f"/c/{secret.id}/share/?close=1", **HTMX).content == b""
    # The owner's page shows it is shared.
    assert '>Shared</span>' in client.get(f"/c/{secret.id}/").content.decode()


@pytest.mark.django_db
def test_continue_in_my_chats_copies_the_branch_shown_into_a_conversation_of_the_reader_s(client, alice, bob, secret):
    secret.system_prompt = "Be brief."
    secret.save(update_fields=["system_prompt"])
    question = secret.messages.get(role="user")
    # Another version of the question, answered: the branch shown is that one.
    other = chain(secret, [Message(role="user", content="kumquat, again"),
                           Message(role="assistant", content="Echo: kumquat, again", model="echo")], question.parent_id)
    shared_with(secret, users=[bob])
    client.force_login(bob)
    response = client.post(f"/c/{secret.id}/continue/")
    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response["Location"] == f"/c/{copy.id}/"
    assert (copy.title, copy.system_prompt, copy.model_id) == (SECRETS[0], "Be brief.", secret.model_id)
    copied = list(copy.messages.order_by("id"))
    assert [(m.role, m.content) for m in copied] == [(m.role, m.content) for m in other]
    assert copied[1].parent_id == copied[0].id and copy.current_leaf_id == copied[1].id
    assert not copied[1].request_id  # the owner's usage stays the owner's
    # It is bob's own: the message box, and alice's conversation untouched.
    page = client.get(f"/c/{copy.id}/").content.decode()
    assert 'aria-label="Message"' in page and "Shared by" not in page
    assert secret.messages.count() == 4 and Conversation.objects.filter(owner=alice).count() == 1


@pytest.mark.django_db
def test_a_reply_still_being_written_is_not_copied(client, alice, bob, secret):
    chain(secret, [Message(role="user", content="more"), Message(role="assistant", content="hal", status="streaming")],
          secret.current_leaf_id)
    shared_with(secret, everyone=True)
    client.force_login(bob)
    client.post(f"/c/{secret.id}/continue/")
    copy = Conversation.objects.get(owner=bob)
    assert [m.content for m in copy.messages.order_by("id")][-1] == "more"


def shared_titles(page: str) -> list[str]:
    listed = page.split('id="shared-list"')[1].split("</ul>")[0]
    return [html.unescape(t) for t in re.findall(r'<a href="/c/\d+/">([^<]*)</a>', listed)]


@pytest.mark.django_db
def test_shared_with_me_lists_newest_first_in_constant_queries(client, alice, bob, carol, provider):
    team = Group.objects.create(name="Team")
    bob.groups.add(team)

    def share_some(count: int) -> None:
        for i in range(count):
            owner = alice if i % 2 else carol
            conversation = Conversation.objects.create(owner=owner, title=f"shared {i}")
            shared_with(conversation, **[{"everyone": True}, {"users": [bob]}, {"groups": [team]}][i % 3])
        Conversation.objects.create(owner=alice, title="not shared")
        Conversation.objects.create(owner=bob, title="bob's own")
        shared_with(Conversation.objects.create(owner=bob, title="bob's, shared"), everyone=True)

    client.force_login(bob)
    share_some(3)
    client.get("/shared/")
    with CaptureQueriesContext(connection) as few:
        page = client.get("/shared/").content.decode()
    assert shared_titles(page) == ["shared 2", "shared 1", "shared 0"]
    assert "carol ·" in page and "alice ·" in page
    share_some(60)
    with CaptureQueriesContext(connection) as many:
        page = client.get("/shared/").content.decode()
    assert len(many) == len(few), [q["sql"] for q in many]
    assert page.count('class="conversation-item shared-item"') == 50 and 'href="?page=2">Older<' in page
    rest = client.get("/shared/?page=2").content.decode()
    assert rest.count('class="conversation-item shared-item"') == 13 and "Newer" in rest
    assert not {"not shared", "bob's own", "bob's, shared"} & set(shared_titles(page) + shared_titles(rest))
    # The sidebar links to it.
    assert '<a href="/shared/" aria-current="page">Shared with me</a>' in page


# -- the websocket


ws = pytest.mark.django_db(transaction=True)


@ws
async def test_the_websocket_refuses_a_member_it_is_not_shared_with_and_nobody(alice, bob, carol, secret):
    await sync_to_async(shared_with)(secret, users=[carol])
    for route in websocket_urlpatterns:
        assert "<int:pk>" in str(route.pattern)
    for cookie in (await session_cookie(bob), ""):
        t = await tab(secret.id, cookie=cookie)
        assert not await t.connect()
        assert await t.comm.receive_nothing(timeout=0.1)


@ws
async def test_a_reader_watches_live_and_every_action_of_theirs_is_refused(alice, bob, secret):
    await sync_to_async(shared_with)(secret, users=[bob])
    reader = await tab(secret.id, cookie=await session_cookie(bob))
    assert await reader.connect()
    question = await secret.messages.filter(role="user").afirst()
    reply = await secret.messages.filter(role="assistant").afirst()
    for action in ({"message": "mine now"}, {"action": "stop"}, {"action": "regenerate", "message_id": reply.id},
                   {"action": "edit", "message_id": question.id, "message": "changed"},
                   {"action": "switch", "message_id": question.id}, {"action": "dance"}):
        await reader.send(**action)
        notice = await reader.read_until(lambda f: 'id="composer-notice"' in f)
        assert access.READ_ONLY in notice[-1], action
    assert await secret.messages.acount() == 2

    # The owner writes; the reader sees the reply as it is written.
    owner = await tab(secret.id, cookie=await session_cookie(alice))
    assert await owner.connect()
    await owner.send(message="hello reader")
    frames = await reader.read_reply()
    assert any("Echo: hello reader" in f for f in frames)
    await owner.read_reply()
    await owner.close()
    await reader.close()


@ws
async def test_stop_sharing_closes_the_reader_s_open_socket_at_once(alice, bob, secret):
    await sync_to_async(shared_with)(secret, everyone=True)
    cookie = await session_cookie(bob)
    reader = await tab(secret.id, cookie=cookie)
    assert await reader.connect()
    owner = await tab(secret.id, cookie=await session_cookie(alice))
    assert await owner.connect()

    await sync_to_async(actions.stop_sharing)(secret)

    frames = await reader.read_until(lambda f: access.NO_LONGER_SHARED in f)
    assert 'id="messages"' in frames[-1] and "kumquat" not in frames[-1]
    assert await reader.comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    # The owner's socket stays, and what is written now reaches only it.
    await owner.send(message="after")
    assert any("Echo: after" in f for f in await owner.read_reply())
    await owner.close()
    again = await tab(secret.id, cookie=cookie)
    assert not await again.connect()


@ws
async def test_a_reader_taken_off_the_share_or_out_of_its_group_is_closed(alice, bob, carol, secret):
    research = await Group.objects.acreate(name="Research")
    await sync_to_async(bob.groups.add)(research)
    await sync_to_async(shared_with)(secret, users=[carol], groups=[research])
    tabs = {}
    for name, member in (("bob", bob), ("carol", carol)):
        tabs[name] = await tab(secret.id, cookie=await session_cookie(member))
        assert await tabs[name].connect()

    await sync_to_async(shared_with)(secret, groups=[research])  # carol taken off
    await tabs["carol"].read_until(lambda f: access.NO_LONGER_SHARED in f)
    assert (await tabs["carol"].comm.receive_output(timeout=5))["code"] == 4403

    await sync_to_async(research.user_set.remove)(bob)  # bob out of the group (from its side)
    await tabs["bob"].read_until(lambda f: access.NO_LONGER_SHARED in f)
    assert (await tabs["bob"].comm.receive_output(timeout=5))["code"] == 4403


@ws
async def test_deleting_a_shared_conversation_closes_its_readers(alice, bob, secret):
    await sync_to_async(shared_with)(secret, everyone=True)
    reader = await tab(secret.id, cookie=await session_cookie(bob))
    assert await reader.connect()
    await secret.adelete()
    await reader.read_until(lambda f: access.NO_LONGER_SHARED in f)
    assert (await reader.comm.receive_output(timeout=5))["code"] == 4403


@pytest.mark.django_db
def test_attachments_follow_the_rule(alice, bob, carol, secret):
    """A sent file is seen by the owner and by those the conversation is shared with; one still in
    the owner's message box by the owner alone; nobody else, nobody logged out; only the owner
    removes."""
    from conversations.attachments import files, store
    from tests.test_attachments import image_bytes

    sent = store.save(alice, secret, files.read("cat.png", image_bytes("PNG")))
    store.attach([sent], secret.messages.get(role="user"), {})
    waiting = store.save(alice, secret, files.read("dog.png", image_bytes("PNG", color=(0, 0, 200))))
    shared_with(secret, users=[carol])
    clients = {}
    for name, user in (("alice", alice), ("bob", bob), ("carol", carol), ("nobody", None)):
        clients[name] = Client()
        if user:
            clients[name].force_login(user)
    for attachment, seen_by in ((sent, {"alice", "carol"}), (waiting, {"alice"})):
        for suffix in ("", "thumbnail/"):
            for name, asking in clients.items():
                response = asking.get(f"/attachments/{attachment.id}/{suffix}")
                if name in seen_by:
                    assert response.status_code == 200, (name, attachment.name, suffix)
                else:
                    assert_nothing_leaks(response, f"{name} {attachment.name} {suffix}")
    for name in ("bob", "carol", "nobody"):
        assert_nothing_leaks(clients[name].post(f"/attachments/{waiting.id}/remove/"), f"{name} remove")
    assert store.waiting(alice, secret) == [waiting]


# Routes a visitor may reach without logging in, and why.
PUBLIC = ("accounts/", "v1/", "^v1/", "healthz", "metrics", "setup/", "admin/")


@pytest.mark.django_db
def test_every_other_page_asks_a_visitor_to_log_in(secret):
    """Not only a conversation's routes: every route of the site but the public ones (walked from
    the urlconf, so a new one is covered) sends a visitor to the login page, whatever the method."""
    visitor = Client()
    asked = 0
    for route, _name, _ in url_patterns():
        if route.startswith(PUBLIC):
            continue
        url = "/" + route.replace("<int:pk>", str(secret.pk)).replace("<str:fmt>", "json")
        for method in ("get", "post"):
            response = getattr(visitor, method)(url)
            assert response.status_code in (302, 405), (method, url, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/accounts/login/"), (method, url)
            asked += 1
    assert asked >= 40
