"""Export a conversation (Markdown, JSON with every branch), all of one's data (a zip), and import
conversations (ours, ChatGPT's, Open WebUI's, the zip) from /settings/."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from conversations.chat import tree
from conversations.models import Conversation, Message
from conversations.transfer import archive

pytestmark = pytest.mark.django_db


def upload(client, document, name: str = "conversations.json") -> tuple[int, str]:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    response = client.post("/import/", {"file": SimpleUploadedFile(name, data, "application/json")})
    return response.status_code, response.content.decode()


def chatted(conversation) -> Conversation:
    conversation.title, conversation.system_prompt = "Lisbon in spring", "You are terse."
    conversation.save()
    Message.objects.create(conversation=conversation, role="user", content="Plan a *trip*")
    Message.objects.create(conversation=conversation, role="assistant", content="Go in **April**.", model="echo",
                           reasoning="Spring is mild.", prompt_tokens=5, completion_tokens=4)
    return conversation


def branched(conversation) -> dict[str, Message]:
    """Three branches: two replies to the first question (the second one followed up), and an
    edited first question with its own reply. The first reply's branch is shown."""
    conversation.title, conversation.system_prompt, conversation.pinned = "Lisbon in spring", "You are terse.", True
    conversation.save()
    m = {"q": tree.add(conversation, None, role="user", content="Plan a *trip*")}
    m["a1"] = tree.add(conversation, m["q"].id, role="assistant", content="Go in **April**.", model="echo",
                       reasoning="Spring is mild.", prompt_tokens=5, completion_tokens=4)
    m["a2"] = tree.add(conversation, m["q"].id, role="assistant", content="Go in May.", model="echo",
                       status="cancelled")
    m["q2"] = tree.add(conversation, m["a2"].id, role="user", content="Why May?")
    m["a3"] = tree.add(conversation, m["q2"].id, role="assistant", content="Fewer crowds.", model="echo",
                       status="error", error="The upstream failed.")
    m["e"] = tree.add(conversation, None, role="user", content="Plan a cheap trip")
    m["a4"] = tree.add(conversation, m["e"].id, role="assistant", content="Take the train.", model="echo")
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=m["a1"])
    conversation.refresh_from_db()
    return m


def without_ids(document: dict) -> dict:
    """An export with its message ids replaced by their positions."""
    at = {m["id"]: n for n, m in enumerate(document["messages"])}
    messages = [m | {"id": at[m["id"]], "parent": at.get(m["parent"])} for m in document["messages"]]
    return document | {"messages": messages, "current_leaf": at[document["current_leaf"]]}


def test_export_then_import_gives_the_same_conversation_every_branch(client, alice, conversation):
    made = branched(conversation)
    client.force_login(alice)
    response = client.get(f"/c/{conversation.id}/export.json")
    assert response["Content-Disposition"] == 'attachment; filename="lisbon-in-spring.json"'
    exported = response.json()
    assert exported["current_leaf"] == made["a1"].id
    assert exported["settings"] | {"model": "echo", "system_prompt": "You are terse.", "pinned": True} == exported["settings"]
    assert [(m["role"], m["content"], m["parent"]) for m in exported["messages"]] == [
        ("user", "Plan a *trip*", None), ("assistant", "Go in **April**.", made["q"].id),
        ("assistant", "Go in May.", made["q"].id), ("user", "Why May?", made["a2"].id),
        ("assistant", "Fewer crowds.", made["q2"].id), ("user", "Plan a cheap trip", None),
        ("assistant", "Take the train.", made["e"].id)]

    status, html = upload(client, exported)
    assert status == 200 and "Imported 1 conversation (7 messages)." in html
    copy = Conversation.objects.exclude(pk=conversation.pk).get(owner=alice)
    again = client.get(f"/c/{copy.id}/export.json").json()
    assert {m["id"] for m in again["messages"]}.isdisjoint({m["id"] for m in exported["messages"]})
    assert without_ids(again) == without_ids(exported)  # dates included: they are kept too
    assert (copy.title, copy.system_prompt, copy.model.name, copy.pinned) == ("Lisbon in spring", "You are terse.", "echo", True)
    # The page shows the branch that was shown, with its versions.
    page = client.get(f"/c/{copy.id}/").content.decode()
    assert "Go in <strong>April</strong>." in page and "Fewer crowds." not in page and "Take the train." not in page


def test_a_version_1_export_imports_as_a_chain(client, alice, provider):
    client.force_login(alice)
    status, html = upload(client, {"format": "chatsite.conversation", "version": 1, "title": "Old", "model": "echo",
                                   "system_prompt": "Be kind.", "messages": [
                                       {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    assert status == 200 and "Imported 1 conversation (2 messages)." in html
    old = Conversation.objects.get(owner=alice)
    assert (old.model.name, old.system_prompt) == ("echo", "Be kind.")
    assert tree.Tree.of(old.pk).path(old.current_leaf_id) == list(old.messages.values_list("id", flat=True))


def test_export_as_markdown_is_the_branch_shown(client, alice, conversation):
    branched(conversation)
    client.force_login(alice)
    response = client.get(f"/c/{conversation.id}/export.md")
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response.content.decode() == (
        "# Lisbon in spring\n\n**System prompt**\n\nYou are terse.\n\n## You\n\nPlan a *trip*\n\n"
        "## Assistant (echo)\n\nGo in **April**.\n")


def test_nobody_exports_another_members_conversation(client, bob, conversation):
    client.force_login(bob)
    assert client.get(f"/c/{conversation.id}/export.json").status_code == 404
    assert client.get(f"/c/{conversation.id}/export.md").status_code == 404


CHATGPT = [{
    "title": "Weekend plans",
    "create_time": 1735725600,
    "update_time": 1735732800.5,  # 2025-01-01 12:00 UTC
    "current_node": "r2",
    "mapping": {
        "root": {"id": "root", "message": None, "parent": None, "children": ["sys"]},
        "sys": {"id": "sys", "parent": "root", "children": ["u1"], "message": {
            "author": {"role": "system"}, "content": {"content_type": "text", "parts": [""]}}},
        # Listed before their parent, and with their siblings' order given by "children".
        "r2": {"id": "r2", "parent": "hidden", "children": [], "message": {
            "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": ["Bike, ", "then swim."]},
            "metadata": {"model_slug": "gpt-4o"}, "create_time": 1735732700}},
        "u1": {"id": "u1", "parent": "sys", "children": ["r1", "hidden", "u1b"], "message": {
            "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["Hike or bike?"]}}},
        "r1": {"id": "r1", "parent": "u1", "children": ["u2"], "message": {
            "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": ["Hike."]},
            "metadata": {"model_slug": "gpt-4o"}}},
        "hidden": {"id": "hidden", "parent": "u1", "children": ["r2"], "message": {
            "author": {"role": "assistant"}, "recipient": "browser",
            "content": {"content_type": "code", "text": "search('weather')"}}},
        "u2": {"id": "u2", "parent": "r1", "children": ["tool"], "message": {
            "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["Where?"]},
            "metadata": {"is_visually_hidden_from_conversation": True}}},
        "tool": {"id": "tool", "parent": "u2", "children": ["r3"], "message": {
            "author": {"role": "tool"}, "content": {"content_type": "text", "parts": ["(results)"]}}},
        "r3": {"id": "r3", "parent": "tool", "children": [], "message": {
            "author": {"role": "assistant"}, "content": {"content_type": "multimodal_text", "parts": [
                {"content_type": "image_asset_pointer"}, "In the hills."]}}},
        "u1b": {"id": "u1b", "parent": "u1", "children": [], "message": {
            "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["  "]}}},
    },
}]

OPEN_WEBUI = [{
    "id": "a1", "title": "Recipe", "updated_at": 1735732800, "created_at": 1735732000,
    "chat": {
        "title": "Recipe", "models": ["llama3"], "params": {"system": "Be brief."},
        "history": {"currentId": "m3", "messages": {
            "m1": {"id": "m1", "parentId": None, "childrenIds": ["m3", "m2"], "role": "user", "content": "Soup?",
                   "timestamp": 1735732100},
            "m2": {"id": "m2", "parentId": "m1", "childrenIds": ["m4"], "role": "assistant", "content": "Leek soup.", "model": "llama3"},
            "m3": {"id": "m3", "parentId": "m1", "childrenIds": [], "role": "assistant", "content": "Tomato soup.", "model": "llama3"},
            "m4": {"id": "m4", "parentId": "m2", "childrenIds": [], "role": "user", "content": "With bread?"},
        }},
        "messages": [],
    },
}]


def shown_and_all(conversation: Conversation) -> tuple[list[tuple], list[tuple]]:
    """The branch shown and the whole tree, as (role, content, parent's content)."""
    rows = {m.id: m for m in conversation.messages.all()}
    as_tuple = [(m.role, m.content, rows[m.parent_id].content if m.parent_id else None) for m in rows.values()]
    path = tree.Tree.of(conversation.pk).path(conversation.current_leaf_id)
    return [as_tuple[list(rows).index(pk)] for pk in path], as_tuple


def test_chatgpts_tree_becomes_our_branches(client, alice):
    client.force_login(alice)
    status, html = upload(client, CHATGPT)
    assert status == 200 and "Imported 1 conversation (4 messages)." in html
    chatgpt = Conversation.objects.get(owner=alice, title="Weekend plans")
    shown, every = shown_and_all(chatgpt)
    # The system message, the browsing call, the hidden and the empty message and the tool's
    # output are left out; what was under them hangs from the nearest message kept above.
    assert every == [("user", "Hike or bike?", None), ("assistant", "Hike.", "Hike or bike?"),
                     ("assistant", "In the hills.", "Hike."), ("assistant", "Bike, \nthen swim.", "Hike or bike?")]
    assert shown == [("user", "Hike or bike?", None), ("assistant", "Bike, \nthen swim.", "Hike or bike?")]
    assert set(chatgpt.messages.values_list("model", flat=True)) == {"", "gpt-4o"}
    assert chatgpt.updated_at.isoformat().startswith("2025-01-01T12:00:00")
    assert chatgpt.messages.get(content__startswith="Bike").created_at.isoformat().startswith("2025-01-01T11:58:20")
    # "2 / 2" on the reply shown: its sibling is the other version.
    assert '<span class="version-count">2 / 2</span>' in client.get(f"/c/{chatgpt.id}/").content.decode()


def test_open_webuis_tree_becomes_our_branches(client, alice):
    client.force_login(alice)
    status, html = upload(client, OPEN_WEBUI)
    assert status == 200 and "Imported 1 conversation (4 messages)." in html
    webui = Conversation.objects.get(owner=alice, title="Recipe")
    assert webui.system_prompt == "Be brief." and webui.model is None  # no usable model of that name here
    shown, every = shown_and_all(webui)
    # Siblings in the order of childrenIds: Tomato soup first.
    assert every == [("user", "Soup?", None), ("assistant", "Tomato soup.", "Soup?"),
                     ("assistant", "Leek soup.", "Soup?"), ("user", "With bread?", "Leek soup.")]
    assert shown == [("user", "Soup?", None), ("assistant", "Tomato soup.", "Soup?")]
    assert webui.created_at.isoformat().startswith("2025-01-01T11:46:40")


def test_chatgpts_whole_data_export_zip_imports_its_conversations(client, alice):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zipped:
        zipped.writestr("conversations.json", json.dumps(CHATGPT))
        zipped.writestr("user.json", json.dumps({"id": "user-1", "email": "alice@example.com"}))
        zipped.writestr("chat.html", "<html></html>")
    client.force_login(alice)
    status, html = upload(client, data.getvalue(), "chatgpt-export.zip")
    assert status == 200 and "Imported 1 conversation (4 messages)." in html


def test_a_bad_file_imports_nothing_and_says_why(client, alice):
    client.force_login(alice)
    status, html = upload(client, b"{not json")
    assert status == 422 and "That file is not JSON" in html
    status, html = upload(client, CHATGPT + [{"title": "broken", "mapping": {"x": {"parent": "missing"}}, "current_node": "x"}])
    assert status == 422 and "Conversation 2 in that file cannot be read" in html and "nothing was imported" in html
    loop = {"a": {"parent": "b", "message": None}, "b": {"parent": "a", "message": None}}
    status, html = upload(client, [{"title": "loop", "mapping": loop}])
    assert status == 422 and "go round in a loop" in html
    status, html = upload(client, [{"format": "chatsite.conversation", "title": "t",
                                    "messages": [{"role": "wizard", "content": "abracadabra"}]}])
    assert status == 422 and "unknown role (wizard)" in html
    status, html = upload(client, [{"format": "chatsite.conversation", "title": "t", "settings": {"pinned": "perhaps"},
                                    "messages": [{"role": "user", "content": "hi"}]}])
    assert status == 422 and "Conversation 1 in that file cannot be read" in html and "perhaps" in html
    status, html = upload(client, {"something": "else"})
    assert status == 422 and "Conversation 1 in that file cannot be read" in html
    status, html = upload(client, b"PK\x03\x04 not really a zip", "export.zip")
    assert status == 422 and "That zip cannot be read" in html
    status, html = upload(client, [])
    assert status == 422 and "That file holds no conversations." in html
    assert not Conversation.objects.exists() and not Message.objects.exists()
    # The error is on /settings/, by the form, which is there to try again.
    assert 'role="alert">That file holds no conversations.' in html and 'name="file"' in html


def test_imported_conversations_are_the_importers_own(client, alice, bob):
    client.force_login(bob)
    upload(client, OPEN_WEBUI)
    assert Conversation.objects.get().owner == bob
    client.force_login(alice)
    assert "Recipe" not in client.get("/").content.decode()


def test_the_import_form_and_export_all_are_on_settings(client, alice):
    client.force_login(alice)
    page = client.get("/settings/").content.decode()
    assert "Export all data" in page and 'action="/import/"' in page and "Import conversations" in page
    assert client.get("/import/").url == "/settings/#your-data"
    assert 'href="/settings/#your-data">Import conversations</a>' in page  # the sidebar's link


# -- all of one's data


def zip_bytes(client) -> bytes:
    response = client.get("/settings/export.zip")
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="chatsite-alice-')
    return b"".join(response.streaming_content)


def zip_of(client) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(zip_bytes(client)))


def test_export_all_data_is_a_zip_of_ones_own_conversations(client, alice, bob, conversation, monkeypatch):
    branched(conversation)
    other = chatted(Conversation.objects.create(owner=alice, title="Second"))
    Conversation.objects.filter(pk=other.pk).update(title="Porto")
    bobs = Conversation.objects.create(owner=bob, title="Bob's secret plan")
    Message.objects.create(conversation=bobs, role="user", content="Bob's secret message")
    # Attachments plug into the zip per conversation (none are stored yet: a stand-in here).
    monkeypatch.setattr(archive, "conversation_files",
                        lambda c: [("photo.png", io.BytesIO(b"\x89PNG " + str(c.pk).encode()))])
    client.force_login(alice)
    with zip_of(client) as zipped:
        names = sorted(zipped.namelist())
        assert names == sorted([f"{conversation.pk}-lisbon-in-spring.json", f"{other.pk}-porto.json",
                                f"attachments/{conversation.pk}/photo.png", f"attachments/{other.pk}/photo.png"])
        document = json.loads(zipped.read(f"{conversation.pk}-lisbon-in-spring.json"))
        assert document == client.get(f"/c/{conversation.pk}/export.json").json()
        assert zipped.read(f"attachments/{other.pk}/photo.png") == b"\x89PNG " + str(other.pk).encode()
        everything = b"".join(zipped.read(name) for name in names)
    assert b"Bob" not in everything and b"secret" not in everything

    # The zip imports again, all of it.
    monkeypatch.setattr(archive, "conversation_files", lambda c: ())
    status, html = upload(client, zip_bytes(client), "export.zip")
    assert status == 200 and "Imported 2 conversations (9 messages)." in html
    assert Conversation.objects.filter(owner=alice).count() == 4
    for copy in Conversation.objects.filter(owner=alice).exclude(pk__in=[conversation.pk, other.pk]):
        assert f'<li><a href="/c/{copy.pk}/">{copy.title}</a></li>' in html  # each one, to open it


def test_export_all_takes_the_same_queries_however_many_conversations(client, alice, provider):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(count: int) -> int:
        while Conversation.objects.filter(owner=alice).count() < count:
            chatted(Conversation.objects.create(owner=alice))
        with CaptureQueriesContext(connection) as captured:
            zip_bytes(client)
        return len(captured)

    client.force_login(alice)
    queries_for(1)  # the session's first request asks a little more, once
    assert queries_for(2) == queries_for(12)


@pytest.mark.django_db
def test_export_all_data_carries_the_attached_files(client, alice, bob, conversation):
    from conversations.attachments import files, store
    from tests.test_attachments import image_bytes

    chatted(conversation)
    question = conversation.messages.filter(role="user").first()
    cat = store.save(alice, conversation, files.read("cat.png", image_bytes("PNG")))
    store.attach([cat], question, {})
    notes = store.save(alice, conversation, files.read("notes.md", b"# Notes\nkumquat"))
    bobs = Conversation.objects.create(owner=bob, title="Bob's")
    store.save(bob, bobs, files.read("bob.md", b"Bob's secret file"))
    client.force_login(alice)
    with zip_of(client) as zipped:
        attached = {name for name in zipped.namelist() if name.startswith("attachments/")}
        photo, text = f"attachments/{conversation.pk}/{cat.pk}-cat.png", f"attachments/{conversation.pk}/{notes.pk}-notes.md"
        assert attached == {photo, text}
        assert zipped.read(photo) == store.read(cat.file)
        assert zipped.read(text) == b"# Notes\nkumquat"
        assert not [name for name in zipped.namelist() if b"Bob's secret" in zipped.read(name)]
