"""Edit and branches: messages form a tree, the page and the upstream follow the active path."""

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.chat import tree
from conversations.models import Conversation, Message, UsageRecord
from conversations.search import search
from tests.conftest import chain
from tests.test_chat_stream import assistant_of, wait_for_idle
from tests.wsclient import Tab

pytestmark = pytest.mark.django_db(transaction=True)


def versions(html: str) -> list[str]:
    return re.findall(r'<span class="version-count">(\d+ / \d+)</span>', html)


# -- the tree itself


def test_a_new_message_continues_the_branch_shown_and_becomes_its_tip(conversation):
    first = Message.objects.create(conversation=conversation, role="user", content="a")
    reply = Message.objects.create(conversation=conversation, role="assistant", content="b")
    assert (first.parent_id, reply.parent_id) == (None, first.id)
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == reply.id


def test_the_path_follows_the_current_leaf_and_siblings_are_numbered(conversation):
    root = tree.add(conversation, None, role="user", content="q")
    a1 = tree.add(conversation, root.id, role="assistant", content="a1")
    follow = tree.add(conversation, a1.id, role="user", content="more")
    a2 = tree.add(conversation, root.id, role="assistant", content="a2")
    a3 = tree.add(conversation, root.id, role="assistant", content="a3")
    shape = tree.Tree.of(conversation.id)
    assert shape.path(a3.id) == [root.id, a3.id]
    # A branch is shown down to its newest message: a1's branch ends with its follow-up.
    assert shape.path(a1.id) == [root.id, a1.id, follow.id]
    assert shape.version(a1.id) == tree.Version(1, 3, None, a2.id)
    assert shape.version(a2.id) == tree.Version(2, 3, a1.id, a3.id)
    assert shape.version(a3.id) == tree.Version(3, 3, a2.id, None)
    assert shape.version(root.id) == tree.Version(1, 1, None, None)
    # Without a leaf (a conversation from before the tree), the newest message's branch.
    assert shape.path(None) == [root.id, a3.id]


def test_the_migration_makes_existing_conversations_single_chains(alice, conversation):
    other = Conversation.objects.create(owner=alice)
    # As before the tree: no parents (bulk_create skips save(), which places messages).
    old = Message.objects.bulk_create([Message(conversation=c, role="user", content=f"{c.pk}-{i}")
                                       for i in range(3) for c in (conversation, other)])
    Conversation.objects.update(current_leaf=None)
    migration = importlib.import_module("conversations.migrations.0005_chattree_message_tree")
    migration.chain(apps, None)
    for c in (conversation, other):
        mine = [m for m in old if m.conversation_id == c.pk]
        rows = list(Message.objects.filter(conversation=c).order_by("id"))
        assert [m.parent_id for m in rows] == [None] + [m.id for m in mine[:-1]]
        c.refresh_from_db()
        assert c.current_leaf_id == mine[-1].id
        assert tree.Tree.of(c.pk).path(c.current_leaf_id) == [m.id for m in mine]


# -- the page


def build_branches(conversation, branches: int, per_branch: int) -> list[list[Message]]:
    """`branches` versions of the first question, each with a chain of `per_branch` messages
    (replies with usage records); the last branch is shown."""
    made = []
    for b in range(branches):
        rows = [Message(role="user" if i % 2 == 0 else "assistant", content=f"b{b} m{i}",
                        request_id=f"req-{b}-{i}" if i % 2 else "") for i in range(per_branch)]
        made.append(chain(conversation, rows))
    UsageRecord.objects.bulk_create([UsageRecord(request_id=m.request_id, source="chat", model_name="echo",
                                                 prompt_tokens=10, completion_tokens=20, ttft_ms=100, duration_ms=600)
                                     for rows in made for m in rows if m.request_id])
    return made


def test_a_conversation_of_1000_messages_over_10_branches_loads_in_constant_queries(client, alice, conversation):
    client.force_login(alice)
    build_branches(conversation, 2, 10)
    client.get("/")
    with CaptureQueriesContext(connection) as small:
        client.get(f"/c/{conversation.id}/")
    Message.objects.all().delete()
    branches = build_branches(conversation, 10, 100)
    assert Message.objects.filter(conversation=conversation).count() == 1000
    with CaptureQueriesContext(connection) as large:
        page = client.get(f"/c/{conversation.id}/").content.decode()
    assert len(large) == len(small), [q["sql"] for q in large]
    # The last branch, its latest page; its first message is the 10th of 10 versions.
    assert ">b9 m99<" in page and ">b9 m50<" in page and ">b9 m49<" not in page and ">b8 m99<" not in page
    assert 'hx-trigger="intersect once"' in page
    # Under each reply, its usage: model, tokens in/out, first token, tokens per second, cost.
    assert "echo · 10 in / 20 out · first token 100 ms · 40.0 tokens/s · $0.000000" in page

    # Earlier messages load along the branch shown, up to its first message.
    first_shown = branches[9][50]
    earlier = client.get(f"/c/{conversation.id}/?before={first_shown.id}", HTTP_HX_REQUEST="true").content.decode()
    assert ">b9 m49<" in earlier and ">b9 m0<" in earlier and ">b8" not in earlier
    assert "10 / 10" in earlier and 'hx-trigger="intersect once"' not in earlier


def test_a_search_result_opens_the_branch_that_holds_it(client, alice, conversation):
    client.force_login(alice)
    branches = build_branches(conversation, 3, 4)
    hidden = tree.add(conversation, branches[0][1].id, role="user", content="the hidden needle")
    tree.add(conversation, hidden.id, role="assistant", content="an answer below it")
    chain(conversation, [Message(role="user", content="later, elsewhere")], branches[2][-1].id)
    url = search(alice, "needle").results[0].url
    assert f"around={hidden.id}" in url
    page = client.get(url).content.decode()
    assert f'id="msg-{hidden.id}"' in page and ">an answer below it<" in page
    assert ">b2 m" not in page and "later, elsewhere" not in page
    assert versions(page) == ["1 / 3", "2 / 2"]  # the first question's versions, then the needle's
    # And it stays the branch shown.
    assert ">an answer below it<" in client.get(f"/c/{conversation.id}/").content.decode()


# -- over the websocket


async def test_edit_adds_a_version_and_a_new_reply_and_only_its_branch_goes_upstream(alice, conversation, upstream):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="first question", model="echo")
    await tab.read_reply()
    await tab.send(message="second question", model="echo")
    await tab.read_until(lambda f: "Echo: second question" in f and "complete" in f)
    first = await Message.objects.aget(conversation=conversation, content="first question")

    await tab.send(action="edit", message_id=str(first.id), message="first, asked better")
    frames = await tab.read_until(lambda f: "Echo: first, asked better" in f and "complete" in f)
    thread = frames[0]
    assert thread.startswith('<div id="messages"') and "first, asked better" in thread
    assert "second question" not in thread and f'id="msg-{first.id}"' not in thread
    assert versions(thread) == ["2 / 2"]
    edited = await Message.objects.aget(conversation=conversation, content="first, asked better")
    assert edited.parent_id is None and edited.role == "user"
    # The upstream got the new branch only.
    assert upstream.requests_for("echo")[-1]["body"]["messages"] == [{"role": "user", "content": "first, asked better"}]
    # Nothing was lost: the first branch is all there.
    assert await Message.objects.filter(conversation=conversation).acount() == 6
    await wait_for_idle()

    # Previous version: the first branch again, down to its newest message; a reload keeps it.
    await tab.send(action="switch", message_id=first.id)
    thread = (await tab.read_until(lambda f: f.startswith('<div id="messages"')))[-1]
    assert "second question" in thread and "Echo: second question" in thread and "asked better" not in thread
    assert versions(thread) == ["1 / 2"]
    await conversation.arefresh_from_db()
    last = await Message.objects.aget(conversation=conversation, content="Echo: second question")
    assert conversation.current_leaf_id == last.id
    await tab.send(message="third question", model="echo")
    await tab.read_until(lambda f: "Echo: third question" in f and "complete" in f)
    sent = upstream.requests_for("echo")[-1]["body"]["messages"]
    assert [m["content"] for m in sent] == ["first question", "Echo: first question", "second question",
                                          "Echo: second question", "third question"]
    await tab.close()


async def test_an_edit_waits_for_the_reply_being_written_and_keeps_nothing_half_done(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="go", model="long")
    await tab.read_until(lambda f: "beforeend" in f)
    question = await Message.objects.aget(conversation=conversation, role="user")
    for request in ({"action": "edit", "message_id": question.id, "message": "stop that"},
                    {"action": "switch", "message_id": question.id}):
        await tab.send(**request)
        notice = (await tab.read_until(lambda f: 'id="composer-notice"' in f))[-1]
        assert "A reply is still being written" in notice
    assert not await Message.objects.filter(content="stop that").aexists()
    await tab.send(action="stop")
    await tab.read_reply(status="cancelled")
    await tab.send(action="edit", message_id=question.id, message="   ")
    assert "Type a message first." in (await tab.read_until(lambda f: 'id="composer-notice"' in f))[-1]
    await tab.close()


async def test_an_edit_or_switch_names_only_messages_of_its_own_conversation(alice, bob, conversation):
    theirs = await Conversation.objects.acreate(owner=bob)
    secret = await Message.objects.acreate(conversation=theirs, role="user", content="bob's secret")
    reply = await Message.objects.acreate(conversation=theirs, role="assistant", content="bob's reply")
    tab = Tab(alice, conversation.id)
    await tab.connect()
    for request in ({"action": "edit", "message_id": secret.id, "message": "mine now"},
                    {"action": "switch", "message_id": secret.id},
                    {"action": "regenerate", "message_id": reply.id},
                    {"action": "edit", "message_id": "1 OR 1=1", "message": "x"},
                    {"action": "switch", "message_id": "²"}, {"action": "switch", "message_id": "9" * 30}):
        await tab.send(**request)
        notice = (await tab.read_until(lambda f: 'id="composer-notice"' in f))[-1]
        assert "secret" not in notice and "bob" not in notice
    assert await Message.objects.filter(conversation=theirs).acount() == 2
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await tab.close()


async def test_a_reply_shows_its_usage_when_it_finishes(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="count my words please", model="echo")
    final = (await tab.read_reply())[-1]
    reply = await assistant_of(conversation)
    stats = re.search(r'<p class="stats">(.*?)</p>', final).group(1)
    # Tokens per second only when the reply took time after its first token (a fast upstream can
    # send every token in one read).
    assert re.fullmatch(r"echo · \d+ in / 5 out · first token \d+ ms( · [\d.]+ tokens/s)? · \$[\d.]+", stats), stats
    assert reply.request_id and f'data-copy="msg-{reply.id}-raw"' in final
    await tab.close()


async def test_a_tab_that_reconnects_after_another_went_to_another_version_gets_that_branch(alice, conversation):
    first = await Message.objects.acreate(conversation=conversation, role="user", content="one")
    old = await Message.objects.acreate(conversation=conversation, role="assistant", content="old answer")
    await tree.aadd(conversation, first.id, role="assistant", content="new answer")
    # The tab's page showed the old branch (leaf=old); another tab has since gone to the new one.
    tab = Tab(alice, conversation.id, since=0)
    tab.comm.scope["query_string"] = f"since=0&leaf={old.id}".encode()
    await tab.connect()
    frames = await tab.read_until(lambda f: f.startswith('<div id="messages"'))
    assert "new answer" in frames[-1] and "old answer" not in frames[-1] and versions(frames[-1]) == ["2 / 2"]
    await tab.close()
