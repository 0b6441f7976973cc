"""/v1 with the official openai SDK as the client, against a running Uvicorn server."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx2 as httpx
import openai
import pytest
from django.utils import timezone

from conversations.models import ApiKey, Model, PromptTemplate, Provider, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(api_server, alice_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=alice_key, max_retries=0, timeout=20)


def usage_records(timeout: float = 20.0, **filters) -> list[UsageRecord]:
    """The settled rows: the server writes usage in batches within a fraction of a second, each
    row "pending" from its request's start until the outcome is written over it."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(UsageRecord.objects.filter(**filters).order_by("created_at", "id"))
        settled = found and all(row.status != "pending" for row in found)
        if settled or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_plain_completion(sdk, upstream):
    raw = sdk.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0.2,
        top_p=0.9, max_tokens=50, seed=7, stop=["\n\n"], presence_penalty=0.1, frequency_penalty=0.1, user="u-1",
    )
    completion = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "echo" and completion.created > 0
    assert completion.choices[0].message.content == "Echo: What is the capital of France?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 7 and completion.usage.total_tokens > 7
    sent = upstream.requests_for("echo")[-1]["body"]
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["seed"] == 7 and sent["stop"] == ["\n\n"]
    assert sent["user"] == "u-1" and sent["stream"] is False
    assert upstream.requests_for("echo")[-1]["headers"]["authorization"] == "Bearer sk-upstream-secret-1234"
    [record] = usage_records(request_id=raw.headers["x-request-id"])
    assert record.source == "api" and record.status == "ok" and record.completion_tokens == 7


def test_a_streamed_completion_with_and_without_usage(sdk):
    chunks = list(sdk.chat.completions.create(model="slow", messages=[{"role": "user", "content": "tell me a joke"}],
                                              stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: tell me a joke"
    assert all(c.usage is None for c in chunks) and all(c.model == "slow" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"

    chunks = list(sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "count"}],
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 2 and chunks[-1].choices == []


def test_usage_is_counted_when_the_upstream_sends_none(sdk):
    chunks = list(sdk.chat.completions.create(model="no-finish", messages=[{"role": "user", "content": "a b c d"}],
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    [record] = usage_records(model_name="no-finish")
    assert record.estimated


def test_content_parts_with_images_reach_the_upstream_as_sent(sdk, upstream):
    content = [{"type": "text", "text": "What is in this picture?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]
    completion = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == "Echo: What is in this picture?"
    assert upstream.requests_for("echo")[-1]["body"]["messages"][0]["content"] == content


def test_n_choices(sdk):
    completion = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], n=2)
    assert [c.index for c in completion.choices] == [0, 1]


def test_tool_calls_round_trip(sdk):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model="tools", messages=messages, tools=tools, tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    second = sdk.chat.completions.create(model="tools", messages=messages, tools=tools)
    assert second.choices[0].message.content == "The tool said: sunny, 21C"
    # Streamed, the call arrives in deltas.
    chunks = list(sdk.chat.completions.create(model="tools", messages=messages[:1], tools=tools, stream=True))
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                        for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert json.loads(arguments) == {"city": "Paris"}


def test_reasoning_content_in_replies_and_deltas(sdk, upstream):
    completion = sdk.chat.completions.create(model="reasoner", messages=[{"role": "user", "content": "why"}],
                                             reasoning_effort="high")
    assert completion.choices[0].message.model_extra["reasoning_content"] == "Thinking about: why"
    assert upstream.requests_for("reasoner")[-1]["body"]["reasoning_effort"] == "high"
    chunks = list(sdk.chat.completions.create(model="reasoner", messages=[{"role": "user", "content": "why"}], stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert reasoning == "Thinking about: why"


def test_a_template_with_variables_by_name_or_uuid(sdk, upstream):
    template = PromptTemplate.objects.create(name="greeter", messages=[
        {"role": "system", "content": "Greet {{ name }} in {{lang}}."}])
    sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "go"}],
                                extra_body={"template": "greeter", "variables": {"name": "Ada", "lang": "French"}})
    sent = upstream.requests_for("echo")[-1]["body"]
    assert sent["messages"] == [{"role": "system", "content": "Greet Ada in French."}, {"role": "user", "content": "go"}]
    assert "template" not in sent and "variables" not in sent
    sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "go"}],
                                extra_body={"template": str(template.uuid), "variables": {"name": "Bo", "lang": "Dutch"}})
    assert upstream.requests_for("echo")[-1]["body"]["messages"][0]["content"] == "Greet Bo in Dutch."
    with pytest.raises(openai.UnprocessableEntityError) as missing:
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "go"}],
                                    extra_body={"template": "greeter", "variables": {"name": "Ada"}})
    assert missing.value.body["param"] == "variables.lang" and "'lang'" in missing.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "go"}],
                                    extra_body={"template": "no-such-template"})


def test_the_template_or_key_default_model_is_used_when_none_is_named(api_server, alice, provider, upstream):
    echo = Model.objects.get(name="echo")
    PromptTemplate.objects.create(name="t", model=echo, messages=[{"role": "system", "content": "Be brief."}])
    api_key, secret = ApiKey.issue(alice, default_model=Model.objects.get(name="reasoner"))
    body = {"messages": [{"role": "user", "content": "hi"}], "template": "t"}
    response = httpx.post(f"{api_server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.json()["model"] == "reasoner"  # the key's default comes first
    _, plain = ApiKey.issue(alice)
    response = httpx.post(f"{api_server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {plain}"})
    assert response.json()["model"] == "echo"
    del body["template"]
    response = httpx.post(f"{api_server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {plain}"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "model"


def test_fallback_to_the_next_model_and_session_id_in_usage(sdk):
    for stream in (False, True):
        response = sdk.chat.completions.with_raw_response.create(
            model="fail-500", messages=[{"role": "user", "content": "hi"}], stream=stream,
            extra_body={"models": ["fail-429", "echo"], "session_id": "session-42"})
        request_id = response.headers["x-request-id"]
        if stream:
            chunks = list(response.parse())
            assert {c.model for c in chunks} == {"echo"}
        else:
            assert response.parse().model == "echo"
        records = usage_records(request_id=request_id)
        while len(records) < 3:
            records = usage_records(request_id=request_id)
        assert [(r.model_name, r.status) for r in records] == [("fail-500", "error"), ("fail-429", "error"), ("echo", "ok")]
        assert {r.session_id for r in records} == {"session-42"}


def test_models_list_and_detail(sdk, alice, api_server):
    ids = [m.id for m in sdk.models.list()]
    assert "echo" in ids and ids == sorted(ids)
    assert sdk.models.retrieve("echo").owned_by == "loop"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")
    key, secret = ApiKey.issue(alice)
    key.allowed_models.set([Model.objects.get(name="slow")])
    limited = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=secret, max_retries=0)
    assert [m.id for m in limited.models.list()] == ["slow"]


# -- errors, each as the SDK's own exception


def test_bad_keys_are_authentication_errors(api_server, alice, provider):
    def call(key):
        client = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=key, max_retries=0)
        return client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])

    revoked, revoked_secret = ApiKey.issue(alice)
    revoked.revoked_at = timezone.now()
    revoked.save()
    _, expired_secret = ApiKey.issue(alice, expires_at=timezone.now() - timedelta(days=1))
    _, good = ApiKey.issue(alice)
    for key, code in [("nonsense", "invalid_api_key"), (good[:-2] + "xx", "invalid_api_key"),
                      (revoked_secret, "revoked_api_key"), (expired_secret, "expired_api_key")]:
        with pytest.raises(openai.AuthenticationError) as error:
            call(key)
        assert error.value.body["code"] == code and error.value.response.headers["x-request-id"]
    response = httpx.get(f"{api_server.url}/v1/models")
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_a_model_the_key_may_not_use_is_permission_denied_on_both_doors(api_server, alice, provider):
    key, secret = ApiKey.issue(alice)
    key.allowed_models.set([Model.objects.get(name="slow")])
    client = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as chat:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert chat.value.body["param"] == "model"
    with pytest.raises(openai.PermissionDeniedError) as detail:
        client.models.retrieve("echo")
    assert detail.value.body == chat.value.body


def test_a_model_restricted_to_a_group_does_not_exist_for_others(sdk, alice):
    """As OpenAI answers: not found, the same on /v1/models/{id}, the API and the chat
    (test_the_chat_says_the_same_of_a_model_restricted_to_a_group), so that a model's existence is not revealed."""
    from django.contrib.auth.models import Group

    Model.objects.get(name="echo").groups.add(Group.objects.create(name="research"))
    with pytest.raises(openai.NotFoundError) as chat:
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError) as detail:
        sdk.models.retrieve("echo")
    assert detail.value.body == chat.value.body
    assert chat.value.body["message"] == "The model 'echo' does not exist or you do not have access to it."
    with pytest.raises(openai.NotFoundError) as absent:
        sdk.models.retrieve("no-such-model")
    assert absent.value.body["message"] == chat.value.body["message"].replace("echo", "no-such-model")
    alice.groups.add(Group.objects.get(name="research"))
    assert sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices
    assert sdk.models.retrieve("echo").id == "echo"


async def test_the_chat_says_the_same_of_a_model_restricted_to_a_group(alice, conversation):
    import html

    from django.contrib.auth.models import Group

    from tests.wsclient import Tab

    group = await Group.objects.acreate(name="research")
    await (await Model.objects.aget(name="slow")).groups.aadd(group)
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hi", model="slow")
    frames = await tab.read_until(lambda f: "composer-notice" in f and "slow" in f)
    assert "The model 'slow' does not exist or you do not have access to it." in html.unescape(frames[-1])
    await tab.close()


def test_unknown_model_is_not_found_and_a_bad_body_is_unprocessable(sdk):
    with pytest.raises(openai.NotFoundError) as error:
        sdk.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["code"] == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert error.value.body["param"] == "temperature"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        sdk.chat.completions.create(model="echo", messages=[{"role": "wizard", "content": "hi"}])
    assert error.value.body["param"] == "messages[0].role"


def test_rate_limit_is_429_with_retry_after(api_server, alice, provider):
    _, secret = ApiKey.issue(alice, rpm=2)
    client = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=secret, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as error:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert 1 <= int(error.value.response.headers["retry-after"]) <= 60
    assert error.value.body["code"] == "rate_limit_exceeded"


def test_a_spent_budget_is_402(api_server, alice, provider):
    Model.objects.filter(name="echo").update(input_price=1_000_000, output_price=1_000_000)  # 1 a token
    _, secret = ApiKey.issue(alice, budget_total=2)  # the first call (3) may overspend it, the second is refused
    client = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert error.value.status_code == 402 and error.value.body["code"] == "budget_exceeded"


def test_upstream_failures_are_502_503_504(sdk, provider):
    with pytest.raises(openai.InternalServerError) as error:
        sdk.chat.completions.create(model="fail-500", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 502
    down = Provider.objects.create(name="down", base_url="http://127.0.0.1:1/v1")
    Model.objects.create(provider=down, upstream_id="x", name="down-model")
    with pytest.raises(openai.InternalServerError) as error:
        sdk.chat.completions.create(model="down-model", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 503
    slow = Provider.objects.create(name="slowpoke", base_url=provider.base_url, timeout=0.5)
    Model.objects.create(provider=slow, upstream_id="hang", name="hang-fast")
    with pytest.raises(openai.InternalServerError) as error:
        sdk.chat.completions.create(model="hang-fast", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 504


def test_a_failure_after_the_stream_started_is_an_error_event(api_server, alice_key):
    body = {"model": "break", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]}
    with httpx.stream("POST", f"{api_server.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {alice_key}"}) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "upstream" in json.loads(events[-2])["error"]["message"]
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "Echo:"


def test_a_client_that_goes_away_cancels_the_upstream_request(api_server, alice_key, upstream):
    before = upstream.cancelled
    body = {"model": "long", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", f"{api_server.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {alice_key}"}) as response:
        for i, _ in enumerate(response.iter_lines()):
            if i > 10:
                break
    deadline = time.monotonic() + 20
    while upstream.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.cancelled == before + 1
    [record] = usage_records(model_name="long")
    assert record.status == "cancelled" and 0 < record.completion_tokens < 400  # billed for what was made


def test_not_json_is_400_and_too_large_is_413(api_server, alice_key):
    headers = {"Authorization": f"Bearer {alice_key}", "Content-Type": "application/json"}
    response = httpx.post(f"{api_server.url}/v1/chat/completions", content=b"{not json", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert response.headers["x-request-id"]
    big = b'{"model": "echo", "messages": [{"role": "user", "content": "' + b"x" * (21 * 1024 * 1024) + b'"}]}'
    response = httpx.post(f"{api_server.url}/v1/chat/completions", content=big, headers=headers, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
