"""The upstream client's stream parsing, on bytes as they might arrive."""

from __future__ import annotations

import asyncio
import json

import httpx2 as httpx
import pytest

from conversations.llm import client
from conversations.llm.client import EventBuffer, Upstream, UpstreamError


def test_events_split_anywhere_across_reads_come_out_whole():
    stream = 'data: {"a": 1}\n\n: a comment\nevent: message\ndata: {"b":\ndata: 2}\r\n\r\ndata: [DONE]\n\n'
    for cut in range(len(stream)):
        buffer = EventBuffer()
        payloads = buffer.feed(stream[:cut]) + buffer.feed(stream[cut:])
        assert payloads == ['{"a": 1}', '{"b":\n2}', "[DONE]"], cut


def run_stream(handler) -> list:
    async def go():
        transport = httpx.MockTransport(handler)
        client._clients[asyncio.get_running_loop()] = httpx.AsyncClient(transport=transport)
        return [batch async for batch in client.stream_chat(Upstream("http://upstream/v1", name="up"), {"stream": True})]
    return asyncio.run(go())


def test_the_chunks_of_one_read_come_as_one_batch_and_the_model_text_is_kept():
    body = "".join(f"data: {json.dumps({'choices': [{'delta': {'content': str(i)}}]})}\n\n" for i in range(5))
    body += "data: [DONE]\n\n"
    batches = run_stream(lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    assert len(batches) == 1 and [c.data["choices"][0]["delta"]["content"] for c in batches[0]] == list("01234")
    assert batches[0][0].json() == json.dumps({"choices": [{"delta": {"content": "0"}}]})  # the upstream's own text


@pytest.mark.parametrize("response, message", [
    (httpx.Response(200, headers={"content-type": "application/json"}, content=b"{}"), "did not answer with an event stream"),
    (httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: nope\n\n"), "not JSON"),
    (httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b'data: {"error": {"message": "boom"}}\n\n'), "error event mid-reply"),
    (httpx.Response(503, content=b'{"error": {"message": "overloaded"}}'), "upstream error 503"),
])
def test_a_bad_stream_is_one_clear_upstream_error(response, message):
    with pytest.raises(UpstreamError, match=message) as error:
        run_stream(lambda request: response)
    assert error.value.status == 502
