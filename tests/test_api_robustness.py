"""The API under pressure: concurrent requests against limits and budgets, and arbitrary bodies."""

from __future__ import annotations

import asyncio
import json

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import ApiKey, Model

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def concurrently(url: str, secret: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(*[
            client.post(f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {secret}"})
            for _ in range(count)
        ])


def test_a_budget_holds_under_concurrent_requests(api_server, alice, provider):
    Model.objects.filter(name="echo").update(input_price=1_000_000, output_price=1_000_000)  # 1 a token
    # Each call reserves 1 + 4 and costs 3: a budget of 5 admits one at a time, whatever the timing.
    _, secret = ApiKey.issue(alice, budget_total=5)
    responses = asyncio.run(concurrently(api_server.url, secret, 20))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) <= 2 and statuses.count(200) >= 1
    assert set(statuses) == {200, 402}
    refused = next(r for r in responses if r.status_code == 402).json()["error"]
    assert refused["code"] == "budget_exceeded" and refused["type"] == "insufficient_quota"


def test_a_rate_limit_holds_under_concurrent_requests(api_server, alice, provider):
    _, secret = ApiKey.issue(alice, rpm=5)
    responses = asyncio.run(concurrently(api_server.url, secret, 15))
    assert [r.status_code for r in responses].count(200) == 5
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 10 and all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert limited[0].json()["error"]["type"] == "rate_limit_error"


def test_a_tokens_per_minute_limit_refuses_once_the_minute_is_used(api_server, alice, provider):
    _, secret = ApiKey.issue(alice, tpm=5)
    headers = {"Authorization": f"Bearer {secret}"}
    first = httpx.post(f"{api_server.url}/v1/chat/completions", json={**BODY, "messages": [
        {"role": "user", "content": "one two three four five six"}]}, headers=headers)
    assert first.status_code == 200
    for _ in range(50):  # the tokens are counted as the request settles, just after it
        second = httpx.post(f"{api_server.url}/v1/chat/completions", json=BODY, headers=headers)
        if second.status_code == 429:
            break
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]


class Raw(str):
    """JSON text put into a body as it is: nesting deeper than the encoder (or the server's
    parser) can recurse."""


def to_json(value) -> str:
    """A body as a hostile client may send it: NaN and Infinity written out, lone surrogates as
    escapes, Raw parts as they are."""
    if isinstance(value, Raw):
        return value
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


hostile_text = st.text(st.characters() | st.characters(categories=["Cs"]) | st.just("\x00"), max_size=20)
huge_integers = st.integers(min_value=2**31, max_value=10**40) | st.integers(min_value=-(10**40), max_value=-(2**63))
deep = st.integers(60, 6000).flatmap(lambda depth: st.sampled_from([
    Raw("[" * depth + "]" * depth), Raw('{"a":' * depth + "1" + "}" * depth)]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | huge_integers | st.floats() | st.text(max_size=20) | hostile_text | deep,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10) | hostile_text, children,
                                                                       max_size=3),
    max_leaves=8,
)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | json_values,
                                 "content": st.text(max_size=30) | hostile_text | json_values})
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["echo", "nope", "fail-500"]) | json_values,
        "messages": st.lists(message, max_size=3) | json_values,
        "stream": st.booleans() | json_values,
        "temperature": st.floats(-1, 3) | st.floats() | json_values,
        "n": st.integers(-1, 200) | huge_integers | st.floats() | json_values,
        "max_tokens": st.integers(-1, 100) | huge_integers | json_values,
        "seed": st.integers() | huge_integers | st.floats() | json_values,
        "session_id": hostile_text | json_values,
        "user": hostile_text | json_values,
        "stop": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "template": hostile_text | json_values,
        "variables": json_values,
        "models": st.lists(st.sampled_from(["echo", "slow", "x"]) | hostile_text, max_size=2) | json_values,
        "stream_options": json_values,
        "logit_bias": json_values,
        "metadata": json_values,
    },
) | json_values


@pytest.fixture
def budgeted_key(alice, provider) -> str:
    """A key with a budget, on models with a price: every request reserves its worst case (on
    Redis in the PostgreSQL pass), which must fit the counter whatever validation lets through."""
    Model.objects.update(input_price=1_000_000, output_price=1_000_000)
    return ApiKey.issue(alice, name="fuzz", budget_total=100_000)[1]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_no_body_makes_a_server_error(api_server, budgeted_key, body):
    secret = budgeted_key
    response = httpx.post(f"{api_server.url}/v1/chat/completions", content=to_json(body).encode(),
                          headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}, timeout=20)
    # fail-500 is the one model whose upstream fails on purpose: a 502 there is the contract.
    upstream_failure = (response.status_code == 502 and isinstance(body, dict) and body.get("model") == "fail-500"
                        and response.json()["error"]["type"] == "upstream_error")
    assert response.status_code < 500 or upstream_failure, (response.status_code, response.text[:300])
    assert response.headers["x-request-id"]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
