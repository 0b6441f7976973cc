"""Export a conversation (Markdown, JSON) and import conversations (ours, ChatGPT's, Open WebUI's)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def upload(client, document) -> tuple[int, str]:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    response = client.post("/import/", {"file": SimpleUploadedFile("conversations.json", data, "application/json")})
    return response.status_code, response.content.decode()


def chatted(conversation) -> Conversation:
    conversation.title, conversation.system_prompt = "Lisbon in spring", "You are terse."
    conversation.save()
    Message.objects.create(conversation=conversation, role="user", content="Plan a *trip*")
    Message.objects.create(conversation=conversation, role="assistant", content="Go in **April**.", model="echo",
                           reasoning="Spring is mild.")
    return conversation


def test_export_then_import_gives_the_same_conversation(client, alice, conversation):
    chatted(conversation)
    client.force_login(alice)
    response = client.get(f"/c/{conversation.id}/export.json")
    assert response["Content-Disposition"] == 'attachment; filename="lisbon-in-spring.json"'
    exported = json.loads(response.content)
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [
        ("user", "Plan a *trip*"), ("assistant", "Go in **April**.")]

    status, html = upload(client, exported)
    assert status == 200 and "Imported 1 conversation (2 messages)." in html
    copy = Conversation.objects.exclude(pk=conversation.pk).get(owner=alice)
    assert (copy.title, copy.system_prompt, copy.model.name) == ("Lisbon in spring", "You are terse.", "echo")
    assert list(copy.messages.values_list("role", "content", "model")) == list(
        conversation.messages.values_list("role", "content", "model"))
    assert client.get(f"/c/{copy.id}/export.json").json()["messages"][1]["content"] == "Go in **April**."


def test_export_as_markdown(client, alice, conversation):
    chatted(conversation)
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
    "update_time": 1735732800.5,  # 2025-01-01 12:00 UTC
    "current_node": "r2",
    "mapping": {
        "root": {"id": "root", "message": None, "parent": None, "children": ["sys"]},
        "sys": {"id": "sys", "parent": "root", "children": ["u1"], "message": {
            "author": {"role": "system"}, "content": {"content_type": "text", "parts": [""]}}},
        "u1": {"id": "u1", "parent": "sys", "children": ["r1", "r2"], "message": {
            "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["Hike or bike?"]}}},
        "r1": {"id": "r1", "parent": "u1", "children": [], "message": {
            "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": ["Hike."]},
            "metadata": {"model_slug": "gpt-4o"}}},
        "r2": {"id": "r2", "parent": "u1", "children": [], "message": {
            "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": ["Bike, ", "then swim."]},
            "metadata": {"model_slug": "gpt-4o"}}},
    },
}]

OPEN_WEBUI = [{
    "id": "a1", "title": "Recipe", "updated_at": 1735732800,
    "chat": {
        "title": "Recipe", "models": ["llama3"], "params": {"system": "Be brief."},
        "history": {"currentId": "m3", "messages": {
            "m1": {"id": "m1", "parentId": None, "role": "user", "content": "Soup?"},
            "m2": {"id": "m2", "parentId": "m1", "role": "assistant", "content": "Leek soup.", "model": "llama3"},
            "m3": {"id": "m3", "parentId": "m1", "role": "assistant", "content": "Tomato soup.", "model": "llama3"},
        }},
        "messages": [],
    },
}]


def test_chatgpt_and_open_webui_exports_import_the_branch_they_show(client, alice):
    client.force_login(alice)
    status, html = upload(client, CHATGPT)
    assert status == 200 and "Imported 1 conversation (2 messages)." in html
    status, html = upload(client, OPEN_WEBUI)
    assert status == 200 and "Imported 1 conversation (2 messages)." in html

    chatgpt = Conversation.objects.get(owner=alice, title="Weekend plans")
    assert list(chatgpt.messages.values_list("role", "content", "model")) == [
        ("user", "Hike or bike?", ""), ("assistant", "Bike, \nthen swim.", "gpt-4o")]
    assert chatgpt.updated_at.isoformat().startswith("2025-01-01T12:00:00")
    webui = Conversation.objects.get(owner=alice, title="Recipe")
    assert webui.system_prompt == "Be brief." and webui.model is None  # no usable model of that name here
    assert list(webui.messages.values_list("role", "content")) == [("user", "Soup?"), ("assistant", "Tomato soup.")]


def test_a_bad_file_imports_nothing_and_says_why(client, alice):
    client.force_login(alice)
    status, html = upload(client, b"{not json")
    assert status == 422 and "That file is not JSON" in html
    status, html = upload(client, CHATGPT + [{"title": "broken", "mapping": {"x": {"parent": "missing"}}, "current_node": "x"}])
    assert status == 422 and "Conversation 2 in that file cannot be read" in html and "nothing was imported" in html
    status, html = upload(client, [{"format": "chatsite.conversation", "title": "t",
                                    "messages": [{"role": "wizard", "content": "abracadabra"}]}])
    assert status == 422 and "unknown role (wizard)" in html
    status, html = upload(client, {"something": "else"})
    assert status == 422 and "Conversation 1 in that file cannot be read" in html
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_imported_conversations_are_the_importers_own(client, alice, bob):
    client.force_login(bob)
    upload(client, OPEN_WEBUI)
    assert Conversation.objects.get().owner == bob
    client.force_login(alice)
    assert "Recipe" not in client.get("/").content.decode()
