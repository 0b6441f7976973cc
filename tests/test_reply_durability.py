"""Nothing lost, nothing passed off: a cut stream is an error at both front doors, the SSE parser
keeps what JSON may carry, usage is a row from the start, and a reply whose process died can be
stopped and does not hold the conversation up."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import httpx2 as httpx
import openai
import pytest

from conversations.chat.replies import RUNNING
from conversations.gateway import usage
from conversations.llm.client import EventBuffer
from conversations.models import Message, UsageRecord
from conversations.models.chat import INTERRUPTED_ERROR
from tests.upstream import SEPARATORS, SEPARATORS_REPLY
from tests.wsclient import Tab

pytestmark = [pytest.mark.django_db(transaction=True)]

TWELVE_WORDS = "one two three four five six seven eight nine ten eleven twelve"
TRUNCATED = "ended before the reply was complete"


async def assistant_of(conversation) -> Message:
    return await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")


def usage_rows(timeout: float = 5.0, **filters) -> list[UsageRecord]:
    """The server writes usage within a fraction of a second; settled rows are what tests want."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(UsageRecord.objects.filter(**filters).exclude(status=usage.PENDING).order_by("created_at", "id"))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def sdk(api_server, alice_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=alice_key, max_retries=0, timeout=20)


# -- 1. a stream that ends cleanly but early is an error everywhere


async def test_a_truncated_stream_is_an_error_in_the_chat_with_the_partial_text_kept(alice, conversation):
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message=TWELVE_WORDS, model="truncate")
    frames = await tab.read_reply(status="error")
    reply = await assistant_of(conversation)
    assert reply.status == "error"
    assert reply.content == "Echo: one two three four five"  # the half that came, kept
    assert "Echo: one two three four five" in frames[-1]
    assert TRUNCATED in reply.error
    assert 'role="alert"' in frames[-1] and TRUNCATED in frames[-1] and "Regenerate" in frames[-1]
    await usage.flush()
    record = await UsageRecord.objects.aget(request_id=reply.request_id)
    assert record.status == "truncated" and TRUNCATED in record.error
    assert record.completion_tokens > 0 and record.source == "chat"
    await tab.close()


def test_a_truncated_stream_on_v1_ends_with_an_error_event_before_done(api_server, alice_key):
    body = {"model": "truncate", "stream": True, "messages": [{"role": "user", "content": TWELVE_WORDS}]}
    with httpx.stream("POST", f"{api_server.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {alice_key}"}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert TRUNCATED in error["message"] and error["type"] == "upstream_error" and error["code"] == "bad_upstream"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-2])
    assert text == "Echo: one two three four five"
    [record] = usage_rows(request_id=request_id)
    assert record.status == "truncated" and TRUNCATED in record.error and record.completion_tokens > 0


def test_the_openai_client_raises_on_a_truncated_stream(sdk):
    stream = sdk.chat.completions.create(model="truncate", stream=True,
                                         messages=[{"role": "user", "content": TWELVE_WORDS}])
    with pytest.raises(openai.APIError, match=TRUNCATED):
        for _ in stream:
            pass


def test_a_truncated_body_without_streaming_is_a_502(api_server, alice_key):
    response = httpx.post(f"{api_server.url}/v1/chat/completions",
                          json={"model": "truncate", "messages": [{"role": "user", "content": TWELVE_WORDS}]},
                          headers={"Authorization": f"Bearer {alice_key}"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "upstream_error"
    [record] = usage_rows(request_id=response.headers["x-request-id"])
    assert record.status == "error"


# -- 2. lines end at CR, LF and CRLF only


def test_the_event_parser_splits_on_cr_lf_and_crlf_only():
    events = EventBuffer()
    payload = '{"content": "a' + SEPARATORS + 'b"}'
    assert events.feed(f"data: {payload}\r") == []
    # The LF that completes a CRLF split across two reads is not a second (blank) line.
    assert events.feed("\ndata: more\r") == []
    assert events.feed("\n\r\n") == [payload + "\nmore"]
    assert events.feed("data: x\rdata: y\n\ndata: z\r\n\r\n") == ["x\ny", "z"]


async def test_line_separators_inside_json_reach_the_chat_intact(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hi", model="separators")
    await tab.read_reply()
    reply = await assistant_of(conversation)
    assert reply.status == "complete" and reply.finish_reason == "stop"
    assert reply.content == SEPARATORS_REPLY
    await tab.close()


def test_line_separators_inside_json_reach_the_openai_client_intact(sdk):
    chunks = list(sdk.chat.completions.create(model="separators", stream=True,
                                              messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == SEPARATORS_REPLY
    assert chunks[-1].choices[0].finish_reason == "stop"


# -- 20. the usage chunk made up for an upstream that sends none


def test_the_made_up_usage_chunk_carries_the_streams_own_id(sdk):
    chunks = list(sdk.chat.completions.create(model="no-finish", messages=[{"role": "user", "content": "a b c d"}],
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert {c.id for c in chunks} == {"chatcmpl-up"}


# -- 3. a usage row from the start of each request


async def test_a_usage_row_is_pending_while_the_reply_is_written_then_settled(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="go", model="long")
    await tab.read_until(lambda f: "word5" in f)
    reply = await assistant_of(conversation)
    deadline = time.monotonic() + 10
    while not await UsageRecord.objects.filter(request_id=reply.request_id).aexists():
        assert time.monotonic() < deadline, "no usage row while the reply is written"
        await asyncio.sleep(0.05)
    pending = await UsageRecord.objects.aget(request_id=reply.request_id)
    assert pending.status == "pending" and pending.source == "chat" and pending.model_name == "long"
    await tab.send(action="stop")
    await tab.read_reply(status="cancelled")
    await usage.flush()
    settled = await UsageRecord.objects.aget(request_id=reply.request_id)
    assert settled.pk == pending.pk and settled.status == "cancelled" and settled.completion_tokens > 0
    await tab.close()


# -- 4. a reply whose process died does not hold the conversation up


async def tab_then_orphan(alice, conversation) -> tuple[Tab, Message]:
    """A tab that has caught up, then a reply left "streaming" by a process that is gone (no task
    writes it anywhere), saved just now."""
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message=" ")  # answered once the tab has caught up, so the orphan comes after
    await tab.read_until(lambda f: "Type a message first." in f)
    orphan = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming",
                                           content="half a reply", model="long")
    return tab, orphan


async def test_send_interrupts_a_reply_not_saved_for_too_long_and_goes_ahead(alice, conversation):
    tab, orphan = await tab_then_orphan(alice, conversation)
    await Message.objects.filter(pk=orphan.pk).aupdate(updated_at=orphan.updated_at - timedelta(minutes=5))
    await tab.send(message="are you there", model="echo")
    frames = await tab.read_until(lambda f: "Echo: are you there" in f and "complete" in f)
    await orphan.arefresh_from_db()
    assert orphan.status == "interrupted" and orphan.content == "half a reply" and orphan.error == INTERRUPTED_ERROR
    def announced(f: str) -> bool:
        return f'id="msg-{orphan.id}"' in f and "message assistant interrupted" in f
    if not any(announced(f) for f in frames):
        await tab.read_until(announced)  # by the sweep, which may have found it first and tells the tabs after
    assert not any("still being written" in f for f in frames)
    await tab.close()


async def test_stop_interrupts_a_reply_that_no_process_writes_then_send_works(alice, conversation):
    # Not stale: with one process its writer is known gone at once; with several (Redis), once
    # it stays unsaved after the Stop.
    tab, orphan = await tab_then_orphan(alice, conversation)
    await tab.send(message="next", model="echo")
    await tab.read_until(lambda f: "still being written" in f)
    assert orphan.id not in RUNNING
    await tab.send(action="stop")
    frames = await tab.read_reply(status="interrupted", timeout=15)
    assert f'id="msg-{orphan.id}"' in frames[-1] and "half a reply" in frames[-1]
    await orphan.arefresh_from_db()
    assert orphan.status == "interrupted" and orphan.content == "half a reply"
    await tab.send(message="next", model="echo")
    await tab.read_until(lambda f: "Echo: next" in f and "complete" in f)
    await tab.close()


# -- 5. the text so far is saved, for every reply of the process at once


async def test_every_reply_being_written_is_saved_each_second_and_a_late_save_changes_no_finished_one(alice, provider):
    from conversations.models import Conversation, Model

    long = await Model.objects.aget(name="long")
    tabs = []
    for _ in range(2):
        conversation = await Conversation.objects.acreate(owner=alice, model=long)
        tab = Tab(alice, conversation.id)
        await tab.connect()
        await tab.send(message="go", model="long")
        await tab.read_until(lambda f: "word1" in f)
        tabs.append((tab, conversation))
    for tab, conversation in tabs:  # each one's text reaches the database while it streams
        reply = await assistant_of(conversation)
        deadline = time.monotonic() + 10
        while "word10" not in (await Message.objects.aget(pk=reply.pk)).content:
            assert time.monotonic() < deadline, "the text so far was not saved"
            await asyncio.sleep(0.1)
        await tab.send(action="stop")
        await tab.read_reply(status="cancelled")
    finished = await assistant_of(tabs[0][1])
    # A save of progress taken before the reply ended is written after it: it changes nothing.
    await asyncio.to_thread(Message.objects.save_progress, [(finished.pk, "stale text", "")])
    assert await Message.objects.aget(pk=finished.pk) == finished
    assert (await Message.objects.aget(pk=finished.pk)).content == finished.content != "stale text"
    for tab, _ in tabs:
        await tab.close()
