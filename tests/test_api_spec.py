"""/v1's responses against OpenAI's own OpenAPI specification: every whole response, every
stream chunk and every error, validated with jsonschema against the schemas vendored in
tests/openai_openapi.json (its $comment names the source and commit)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import httpx2 as httpx
import pytest
from jsonschema import Draft202012Validator

from conversations.models import ApiKey, Model, Provider

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = json.loads((Path(__file__).parent / "openai_openapi.json").read_text())


@cache
def validator(schema: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]})


def valid(schema: str, data) -> None:
    errors = sorted(validator(schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, f"{schema}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_the_vendored_schemas_can_fail():
    """The validator is not vacuous: what the specification types as a string must be one."""
    with pytest.raises(AssertionError, match="system_fingerprint"):
        valid("CreateChatCompletionResponse", {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                                               "choices": [], "system_fingerprint": None})
    with pytest.raises(AssertionError):
        valid("ErrorResponse", {"error": {"message": "m", "type": "t"}})


def post(url: str, key: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def events(url: str, key: str, **body) -> list:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=20,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


HI = [{"role": "user", "content": "hi there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize("body", [
    {"model": "echo", "messages": HI},
    {"model": "echo", "messages": HI, "n": 3},
    {"model": "reasoner", "messages": HI},
    {"model": "tools", "messages": HI, "tools": TOOLS},
    {"model": "no-finish", "messages": HI},
])
def test_whole_responses_are_valid(api_server, alice_key, body):
    response = post(api_server.url, alice_key, **body)
    assert response.status_code == 200
    valid("CreateChatCompletionResponse", response.json())
    assert "system_fingerprint" not in response.json()  # the upstream sent none: none is made up


@pytest.mark.parametrize("body", [
    {"model": "echo", "messages": HI},
    {"model": "echo", "messages": HI, "stream_options": {"include_usage": True}},
    {"model": "no-finish", "messages": HI, "stream_options": {"include_usage": True}},  # usage made up here
    {"model": "reasoner", "messages": HI},
    {"model": "tools", "messages": HI, "tools": TOOLS},
])
def test_every_stream_chunk_is_valid(api_server, alice_key, body):
    chunks = events(api_server.url, alice_key, **body)
    assert chunks
    for chunk in chunks:
        valid("CreateChatCompletionStreamResponse", chunk)


@pytest.mark.parametrize("model", ["break", "leak-event"])
def test_an_error_event_in_a_stream_is_valid(api_server, alice_key, model):
    *chunks, error = events(api_server.url, alice_key, model=model, messages=[{"role": "user", "content": "a b c d e"}])
    for chunk in chunks:
        valid("CreateChatCompletionStreamResponse", chunk)
    valid("ErrorResponse", error)


def test_every_error_is_valid(api_server, alice, alice_key, provider):
    url, hi = api_server.url, {"messages": HI}
    down = Provider.objects.create(name="down", base_url="http://127.0.0.1:1/v1")
    Model.objects.create(provider=down, upstream_id="x", name="down-model")
    slow = Provider.objects.create(name="slowpoke", base_url=provider.base_url, timeout=0.5)
    Model.objects.create(provider=slow, upstream_id="hang", name="hang-fast")
    _, limited = ApiKey.issue(alice, rpm=1)
    Model.objects.filter(name="slow").update(input_price=1_000_000, output_price=1_000_000)
    _, broke = ApiKey.issue(alice, budget_total=0)
    headers = {"Authorization": f"Bearer {alice_key}"}
    responses = {
        400: [httpx.post(f"{url}/v1/chat/completions", content=b"{nope", headers=headers),
              post(url, alice_key, model="leak-400", **hi)],
        401: [post(url, "cs-wrong", model="echo", **hi), httpx.get(f"{url}/v1/models")],
        402: [post(url, broke, model="slow", **hi)],
        404: [post(url, alice_key, model="nope", **hi), httpx.get(f"{url}/v1/models/nope", headers=headers),
              httpx.get(f"{url}/v1/models/x%0A", headers=headers), httpx.get(f"{url}/v1/elsewhere", headers=headers)],
        405: [httpx.get(f"{url}/v1/chat/completions", headers=headers)],
        422: [post(url, alice_key, model="echo", messages=[]), post(url, alice_key, model="echo", temperature=9, **hi),
              post(url, alice_key, model="echo", n=0.5, **hi)],
        429: [post(url, limited, model="echo", **hi) for _ in range(2)][1:] + [post(url, alice_key, model="leak-429", **hi)],
        502: [post(url, alice_key, model="fail-500", **hi), post(url, alice_key, model="leak-401", **hi)],
        503: [post(url, alice_key, model="down-model", **hi)],
        504: [post(url, alice_key, model="hang-fast", **hi)],
    }
    for status, answers in responses.items():
        for response in answers:
            assert response.status_code == status, (status, response.text)
            assert response.headers["x-request-id"]
            valid("ErrorResponse", response.json())
    assert responses[405][0].headers["allow"] == "POST"


def test_the_model_list_and_each_model_are_valid(api_server, alice_key):
    headers = {"Authorization": f"Bearer {alice_key}"}
    listing = httpx.get(f"{api_server.url}/v1/models", headers=headers).json()
    valid("ListModelsResponse", listing)
    assert listing["data"]
    for model in listing["data"]:
        valid("Model", httpx.get(f"{api_server.url}/v1/models/{model['id']}", headers=headers).json())
