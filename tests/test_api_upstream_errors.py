"""An upstream's errors: members get Chatsite's own message with the upstream's code, param and
Retry-After; the upstream's text goes to admins only, with its key redacted. The loopback
upstream's leak-* models echo the Authorization header they were sent, as a careless provider
might."""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest

from conversations.models import Message, Model, Provider
from tests.test_api import usage_records
from tests.wsclient import Tab

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-upstream-secret-1234"  # the loopback provider's key (conftest)
PLAIN_SECRET = "correct horse battery staple"  # a provider key that is not key-shaped


def chat(url: str, key: str, model: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def assert_nothing_leaked(text: str) -> None:
    assert SECRET not in text and PLAIN_SECRET not in text
    assert "Incorrect API key provided" not in text  # the upstream's own words


@pytest.mark.parametrize("model, status, code", [
    ("leak-401", 502, "invalid_api_key"), ("leak-500", 502, "server_error"), ("leak-429", 429, "rate_limit_exceeded"),
])
def test_a_provider_error_reaches_members_in_chatsites_words_with_its_code(api_server, alice_key, model, status, code):
    for stream in (False, True):
        response = chat(api_server.url, alice_key, model, stream=stream)
        assert response.status_code == status, response.text
        assert_nothing_leaked(response.text)
        error = response.json()["error"]
        assert error["code"] == code and model[-3:] in error["message"]  # the upstream's status
        assert "loop" in error["message"]  # which provider, for the member to tell an admin
    records = usage_records(model_name=model)
    while len(records) < 2:
        records = usage_records(model_name=model)
    for record in records:  # the admin's copy: the upstream's own text, the key redacted
        assert record.status == "error" and "Incorrect API key provided: [redacted]" in record.error
        assert SECRET not in record.error


def test_an_upstream_429_passes_on_its_retry_after(api_server, alice_key):
    response = chat(api_server.url, alice_key, "leak-429")
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_a_client_error_passes_on_its_code_param_and_redacted_message(api_server, alice_key):
    response = chat(api_server.url, alice_key, "leak-400")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("context_length_exceeded", "messages", "invalid_request_error")
    assert "provided: [redacted]" in error["message"] and SECRET not in response.text  # about the member's request


def test_an_error_event_mid_stream_is_chatsites_words(api_server, alice_key):
    body = {"model": "leak-event", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]}
    with httpx.stream("POST", f"{api_server.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {alice_key}"}) as response:
        text = response.read().decode()
    assert_nothing_leaked(text)
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "server_error" and "loop" in error["message"]
    [record] = usage_records(model_name="leak-event")
    assert "Upstream trouble with [redacted]" in record.error and SECRET not in record.error


def test_a_provider_key_that_is_not_key_shaped_is_redacted_too(api_server, alice_key, upstream):
    plain = Provider(name="plain", base_url=upstream.base_url)
    plain.api_key = PLAIN_SECRET
    plain.save()
    Model.objects.create(provider=plain, upstream_id="leak-401", name="plain-401")
    response = chat(api_server.url, alice_key, "plain-401")
    assert response.status_code == 502
    assert_nothing_leaked(response.text)
    [record] = usage_records(model_name="plain-401")
    assert "provided: [redacted]" in record.error and PLAIN_SECRET not in record.error


def test_admins_see_the_redacted_upstream_text_on_the_usage_pages(api_server, alice_key, client, charlie):
    chat(api_server.url, alice_key, "leak-500")
    [record] = usage_records(model_name="leak-500")
    client.force_login(charlie)
    page = client.get(f"/admin/conversations/usagerecord/{record.pk}/change/").content.decode()
    assert "Incorrect API key provided: [redacted]" in page and SECRET not in page
    listing = client.get("/admin/conversations/usagerecord/").content.decode()
    assert SECRET not in listing


@pytest.mark.parametrize("model", ["leak-401", "leak-500", "leak-event"])
async def test_the_chat_shows_chatsites_words_not_the_providers(alice, conversation, model):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="a b c d e f", model=model)
    await tab.read_reply(status="error")
    reply = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    assert reply.status == "error" and "loop" in reply.error
    assert_nothing_leaked(reply.error)
    for frame in tab.frames:
        assert_nothing_leaked(frame)
    await tab.close()
