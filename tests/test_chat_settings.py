"""Chat settings: the panel checks values with /v1's validator, saves them on the conversation, and
every later reply (regenerated and edited ones too) carries them upstream through the pipeline."""

from __future__ import annotations

import asyncio
import html
import json
import time

import pytest

from conversations.gateway.errors import GatewayError
from conversations.gateway.validation import validate_chat_request
from conversations.models import Conversation, Message, Model, PromptTemplate, UsageRecord
from tests.wsclient import Tab

FORM = {"system_prompt": "Answer in French.", "temperature": "0.3", "top_p": "0.9", "max_tokens": "256",
        "reasoning_effort": "low"}


def url(conversation) -> str:
    return f"/c/{conversation.id}/settings/"


def text(response) -> str:
    return html.unescape(response.content.decode())


@pytest.fixture
def pirate(db):
    return PromptTemplate.objects.create(
        name="pirate", description="Talk like one",
        messages=[{"role": "system", "content": "Talk like a {{who}} from {{place}}."}], variables={"who": "pirate"})


@pytest.fixture
def reasoner_chat(alice, provider):
    Model.objects.filter(name="reasoner").update(supports_reasoning=True)
    return Conversation.objects.create(owner=alice, model=Model.objects.get(name="reasoner"))


def v1_message(**fields) -> str:
    """What /v1 answers for a body with these fields."""
    with pytest.raises(GatewayError) as refused:
        validate_chat_request({"model": "echo", "messages": [{"role": "user", "content": "hi"}], **fields})
    return refused.value.message


@pytest.mark.django_db
def test_the_panel_saves_the_settings_on_the_conversation(client, alice, reasoner_chat, pirate):
    client.force_login(alice)
    response = client.post(url(reasoner_chat), {**FORM, "preset": "pirate", "variables.who": "parrot",
                                                "variables.place": "Tortuga"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert '<p id="cs-status" role="status">Saved</p>' in response.content.decode()
    reasoner_chat.refresh_from_db()
    assert reasoner_chat.system_prompt == "Answer in French."
    assert reasoner_chat.parameters == {"temperature": 0.3, "top_p": 0.9, "max_tokens": 256, "reasoning_effort": "low"}
    assert reasoner_chat.template == pirate and reasoner_chat.variables == {"who": "parrot", "place": "Tortuga"}

    # The page shows them; an emptied field goes back to the model's default (not sent at all).
    page = text(client.get(f"/c/{reasoner_chat.id}/"))
    assert 'name="temperature" value="0.3"' in page and 'name="variables.place" value="Tortuga"' in page
    client.post(url(reasoner_chat), {**FORM, "temperature": "", "preset": ""}, HTTP_HX_REQUEST="true")
    reasoner_chat.refresh_from_db()
    assert "temperature" not in reasoner_chat.parameters and reasoner_chat.template is None
    assert reasoner_chat.variables == {}


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "typed", "as_v1_sends_it"), [
    ("temperature", "5", 5),
    ("temperature", "warm", "warm"),
    ("temperature", "nan", float("nan")),
    ("top_p", "-1", -1),
    ("max_tokens", "0", 0),
    ("max_tokens", "2.5", 2.5),
    ("max_tokens", str(2**31), 2**31),
    ("reasoning_effort", "extreme", "extreme"),
])
def test_a_bad_value_gets_the_v1_message_in_place_and_nothing_is_saved(client, alice, reasoner_chat, field, typed,
                                                                       as_v1_sends_it):
    client.force_login(alice)
    response = client.post(url(reasoner_chat), {**FORM, field: typed}, HTTP_HX_REQUEST="true")
    page = text(response)
    message = v1_message(**{field: as_v1_sends_it})
    assert message.startswith(f"Invalid '{field}': ")
    assert f'<p class="error" id="cs-{field.replace("_", "-")}-error">{message}</p>' in page
    assert "Not saved" in page and ">Saved<" not in page
    # Nothing typed is lost: every field holds what was typed, the bad value too.
    assert f'value="{typed}"' in page or f'value="{typed}" selected' in page or field == "reasoning_effort"
    assert "Answer in French." in page and 'aria-invalid="true"' in page
    assert all(f'name="{name}" value="{value}"' in page for name, value in FORM.items()
               if name not in (field, "system_prompt", "reasoning_effort"))
    reasoner_chat.refresh_from_db()
    assert reasoner_chat.parameters is None and reasoner_chat.system_prompt == ""


@pytest.mark.django_db
def test_a_slot_with_no_value_and_no_default_is_named_as_on_v1(client, alice, conversation, pirate):
    client.force_login(alice)
    page = text(client.post(url(conversation), {"preset": "pirate", "variables.who": "", "variables.place": ""},
                            HTTP_HX_REQUEST="true"))
    assert "The template 'pirate' needs a value for 'place' in 'variables'." in page
    conversation.refresh_from_db()
    assert conversation.template is None


@pytest.mark.django_db
def test_choosing_a_preset_shows_a_field_per_slot_with_its_default(client, alice, conversation, pirate):
    client.force_login(alice)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert '<label for="cs-preset">Preset</label>' in page and '<option value="pirate">pirate — Talk like one</option>' in page
    assert 'name="template"' not in page  # the preset is chosen in the panel only
    slots = client.get(url(conversation), {"part": "slots", "preset": "pirate"}).content.decode()
    assert '<label for="cs-slot-who">who</label>' in slots and 'name="variables.who" value="pirate"' in slots
    assert 'name="variables.place" value=""' in slots
    none = client.get(url(conversation), {"part": "slots", "preset": ""}).content.decode()
    assert "variables." not in none


@pytest.mark.django_db
def test_reasoning_effort_is_shown_only_for_a_model_that_supports_it(client, alice, conversation, reasoner_chat):
    client.force_login(alice)
    assert "Reasoning effort" not in client.get(f"/c/{conversation.id}/").content.decode()
    page = client.get(f"/c/{reasoner_chat.id}/").content.decode()
    assert '<label for="cs-reasoning-effort">Reasoning effort</label>' in page
    # Picking another model in the message box asks for the field again.
    picked = client.get(url(conversation), {"part": "reasoning", "model": "reasoner"}).content.decode()
    assert "Reasoning effort" in picked
    assert "Reasoning effort" not in client.get(url(reasoner_chat), {"part": "reasoning", "model": "echo"}).content.decode()


@pytest.mark.django_db
def test_only_the_owner_reaches_the_panel(client, bob, conversation):
    client.force_login(bob)
    assert client.post(url(conversation), {**FORM}, HTTP_HX_REQUEST="true").status_code == 404
    assert client.get(url(conversation)).status_code == 404
    assert client.get(url(conversation), {"part": "slots", "preset": ""}).status_code == 404
    conversation.refresh_from_db()
    assert conversation.system_prompt == "" and conversation.parameters is None


@pytest.mark.django_db
def test_the_json_export_carries_the_settings(client, alice, conversation, pirate):
    client.force_login(alice)
    client.post(url(conversation), {"system_prompt": "Be brief.", "temperature": "1", "preset": "pirate",
                                    "variables.place": "Nassau"}, HTTP_HX_REQUEST="true")
    exported = json.loads(client.get(f"/c/{conversation.id}/export.json").content)["settings"]
    assert exported["system_prompt"] == "Be brief." and exported["parameters"] == {"temperature": 1}
    assert exported["template"] == "pirate" and exported["variables"] == {"place": "Nassau"}


def save(user, conversation, data: dict) -> None:
    """The panel's POST, as the browser sends it (from async tests)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    response = client.post(url(conversation), data, HTTP_HX_REQUEST="true")
    assert ">Saved<" in response.content.decode(), text(response)


async def usage_rows(conversation, count: int) -> list[UsageRecord]:
    """The usage rows of the conversation's replies, once the writer has flushed `count` of them
    settled (a row is inserted pending while its reply runs)."""
    deadline = time.monotonic() + 15
    while True:
        rows = [r async for r in UsageRecord.objects.filter(session_id=f"conversation-{conversation.id}").order_by("id")]
        settled = [r for r in rows if r.status != "pending"]
        if len(settled) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


@pytest.mark.django_db(transaction=True)
async def test_every_later_reply_regenerated_and_edited_ones_too_carries_the_settings(alice, reasoner_chat, pirate, upstream):
    tab = Tab(alice, reasoner_chat.id)
    await tab.connect()  # before the settings are saved: the socket's conversation is read afresh
    await asyncio.to_thread(save, alice, reasoner_chat, {**FORM, "preset": "pirate", "variables.place": "Tortuga"})
    await tab.send(message="ahoy")
    await tab.read_reply()
    question = await Message.objects.filter(conversation=reasoner_chat, role="user").afirst()
    reply = await Message.objects.filter(conversation=reasoner_chat, role="assistant").afirst()
    await tab.send(action="regenerate", message_id=reply.id)
    await tab.read_reply()
    await tab.send(action="edit", message_id=question.id, message="ahoy again")
    await tab.read_reply()
    await tab.close()

    sent = [r["body"] for r in upstream.requests_for("reasoner")]
    assert len(sent) == 3
    for body, asked in zip(sent, ["ahoy", "ahoy", "ahoy again"], strict=True):
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["reasoning_effort"]) == (0.3, 0.9, 256, "low")
        # The preset's messages, slots filled (a default, a value), first; then the system prompt.
        assert body["messages"] == [{"role": "system", "content": "Talk like a pirate from Tortuga."},
                                    {"role": "system", "content": "Answer in French."},
                                    {"role": "user", "content": asked}]
        assert not {"template", "variables", "session_id"} & set(body)  # gateway extensions stay here
    rows = await usage_rows(reasoner_chat, 3)
    assert [(r.source, r.status, r.model_name) for r in rows] == [("chat", "ok", "reasoner")] * 3


@pytest.mark.django_db(transaction=True)
async def test_reasoning_effort_is_not_sent_to_a_model_without_reasoning(alice, conversation, upstream):
    await asyncio.to_thread(save, alice, conversation, {"temperature": "0", "reasoning_effort": "high"})
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hello")
    await tab.read_reply()
    await tab.close()
    body = upstream.requests_for("echo")[-1]["body"]
    assert body["temperature"] == 0 and "reasoning_effort" not in body


@pytest.mark.django_db(transaction=True)
async def test_a_stored_value_the_validator_refuses_fails_the_reply_with_its_message(alice, conversation, upstream):
    # Saved by something other than the panel (an older rule, the shell): checked again on the way.
    await Conversation.objects.filter(pk=conversation.pk).aupdate(parameters={"top_p": 7})
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hello")
    final = (await tab.read_reply(status="error"))[-1]
    await tab.close()
    assert html.escape(v1_message(top_p=7), quote=True) in final
    assert upstream.requests_for("echo") == []


@pytest.mark.django_db
def test_new_chat_reusing_an_untouched_one_starts_without_its_settings(client, alice, conversation, pirate):
    client.force_login(alice)
    client.post(url(conversation), {"temperature": "1.5", "preset": "pirate", "variables.place": "Nassau"},
                HTTP_HX_REQUEST="true")
    assert client.post("/c/new/")["Location"] == f"/c/{conversation.id}/"  # no message yet: the same one
    conversation.refresh_from_db()
    assert (conversation.parameters, conversation.template, conversation.variables) == (None, None, None)
