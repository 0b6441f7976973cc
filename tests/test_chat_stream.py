"""The browser chat over its websocket: streaming, persistence, stop, errors, many tabs."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from conversations.chat import sweeper
from conversations.chat.replies import RUNNING
from conversations.gateway import usage
from conversations.models import Message, Model, UsageRecord
from tests.conftest import REDIS
from tests.wsclient import Tab, fragments_text, message_ids, streaming_text

pytestmark = [pytest.mark.django_db(transaction=True)]


async def assistant_of(conversation) -> Message:
    return await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")


async def wait_for_idle(timeout: float = 30.0) -> None:
    """Until no reply is being written in this process (a deadline, not a speed expectation)."""
    await wait_until(lambda: not RUNNING, timeout, "the replies to finish")


async def wait_until(predicate, timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_reply_streams_in_fragments_and_is_saved_rendered(alice, conversation):
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    text = "hello there friend, " * 8  # 25 words, 30 ms apart: several 50 ms batches
    await tab.send(message=text, model="slow")
    frames = await tab.read_reply()

    reply = await assistant_of(conversation)
    assert reply.status == "complete"
    assert reply.content == "Echo: " + text.strip()
    assert reply.finish_reason == "stop"
    assert reply.completion_tokens == 25
    assert any('class="message user complete"' in f and "hello there friend" in f for f in frames)
    assert fragments_text(frames, reply.id) == "Echo: " + text.strip()
    assert len([f for f in frames if "beforeend" in f]) >= 2  # streamed in several frames
    assert f'<div class="body markdown"><p>Echo: {text.strip()}</p>' in frames[-1]
    await tab.close()


async def test_the_upstream_gets_the_system_prompt_and_the_whole_history(alice, conversation, upstream):
    conversation.system_prompt = "You are terse."
    await conversation.asave(update_fields=["system_prompt"])
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="first", model="echo")
    await tab.read_reply()
    await tab.send(message="second", model="echo")
    await tab.read_until(lambda f: "Echo: second" in f and "complete" in f)

    sent = upstream.requests_for("echo")[-1]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "echo"
    await tab.close()


async def test_the_first_message_names_the_conversation(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="Plan a trip to Lisbon in spring", model="echo")
    frames = await tab.read_reply()
    await conversation.arefresh_from_db()
    assert conversation.title == "Plan a trip to Lisbon in spring"
    assert any('<h1 id="conversation-title" hx-swap-oob="true">Plan a trip to Lisbon in spring</h1>' in f for f in frames)
    assert any(f'<a id="conversation-link-{conversation.id}" href="/c/{conversation.id}/" aria-current="page" hx-swap-oob="true">Plan a trip' in f for f in frames)
    await tab.close()


async def test_model_output_is_sanitized_before_it_becomes_html(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="show me", model="markdown")
    final = (await tab.read_reply())[-1]
    assert "<table>" in final and '<span class="nb">print</span>' in final
    assert "<script>" not in final and 'href="javascript:' not in final
    assert "&lt;script&gt;" in final
    await tab.close()


async def test_the_reply_survives_the_tab_closing(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="are you still there", model="slow")
    await tab.read_until(lambda f: "beforeend" in f)
    await tab.close()
    await wait_for_idle()
    reply = await assistant_of(conversation)
    assert reply.status == "complete"
    assert reply.content == "Echo: are you still there"


async def test_a_second_tab_sees_the_same_reply(alice, conversation):
    first, second = Tab(alice, conversation.id), Tab(alice, conversation.id)
    await first.connect()
    await second.connect()
    await first.send(message="one two three", model="slow")
    frames_first = await first.read_reply()
    frames_second = await second.read_reply()
    reply = await assistant_of(conversation)
    assert fragments_text(frames_first, reply.id) == fragments_text(frames_second, reply.id) == "Echo: one two three"
    assert any("one two three" in f and 'class="message user' in f for f in frames_second)
    await first.close()
    await second.close()


async def test_a_tab_that_connects_mid_reply_gets_the_text_so_far_then_the_rest(alice, conversation):
    first = Tab(alice, conversation.id)
    await first.connect()
    await first.send(message="go", model="long")
    await first.read_until(lambda f: "word30" in f)

    late = Tab(alice, conversation.id, since=time.time() - 60)
    await late.connect()
    reply = await assistant_of(conversation)
    frames = await late.read_reply(timeout=60)
    snapshot = next(streaming_text(f, reply.id) for f in frames if streaming_text(f, reply.id) is not None)
    assert "word30" in snapshot
    rest = fragments_text(frames[frames.index(next(f for f in frames if streaming_text(f, reply.id) is not None)):], reply.id)
    await reply.arefresh_from_db()
    assert snapshot + rest == reply.content  # nothing missing, nothing twice
    assert reply.content.endswith("word399")
    await first.close()
    await late.close()


async def test_stop_cancels_the_reply_and_the_upstream_request_and_keeps_the_text(alice, conversation, upstream):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="go", model="long")
    await tab.read_until(lambda f: "word10" in f)
    cancelled_before = upstream.cancelled
    await tab.send(action="stop")
    await tab.read_reply(status="cancelled")
    reply = await assistant_of(conversation)
    assert reply.status == "cancelled"
    assert reply.content.startswith("word0 word1 word2") and "word399" not in reply.content
    await wait_until(lambda: upstream.cancelled > cancelled_before, what="the upstream request to be closed")
    assert upstream.cancelled == cancelled_before + 1
    await tab.close()


async def test_stop_from_another_tab_stops_the_reply(alice, conversation):
    writer, other = Tab(alice, conversation.id), Tab(alice, conversation.id)
    await writer.connect()
    await other.connect()
    await writer.send(message="go", model="long")
    await other.read_until(lambda f: "word5" in f)
    await other.send(action="stop")
    await writer.read_reply(status="cancelled")
    assert (await assistant_of(conversation)).status == "cancelled"
    await writer.close()
    await other.close()


async def test_a_stream_that_breaks_keeps_the_partial_text_and_shows_the_error(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="a b c d e f", model="break")
    final = (await tab.read_reply(status="error"))[-1]
    reply = await assistant_of(conversation)
    assert reply.status == "error"
    assert reply.content == "Echo: a b"
    assert "upstream" in reply.error.lower()
    assert 'role="alert"' in final and "Regenerate" in final
    await tab.close()


@pytest.mark.parametrize("model, words", [("fail-429", "rate limited"), ("fail-500", "upstream error 500")])
async def test_an_upstream_error_status_is_explained_in_place(alice, conversation, model, words):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hi", model=model)
    final = (await tab.read_reply(status="error"))[-1]
    assert words in final
    assert (await assistant_of(conversation)).status == "error"
    await tab.close()


async def test_a_stream_without_finish_reason_or_usage_completes_with_estimated_usage(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="count me", model="no-finish")
    await tab.read_reply()
    reply = await assistant_of(conversation)
    assert reply.content == "Echo: count me" and reply.finish_reason == ""
    await usage.flush()
    record = await UsageRecord.objects.filter(model_name="no-finish").aget()
    assert record.estimated and record.completion_tokens > 0 and record.source == "chat"
    await tab.close()


async def test_every_reply_writes_a_usage_record(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="one two", model="echo")
    await tab.read_reply()
    await usage.flush()
    record = await UsageRecord.objects.select_related("user").aget()
    assert record.user == alice and record.model_name == "echo" and record.status == "ok"
    assert (record.prompt_tokens, record.completion_tokens, record.estimated) == (2, 3, False)
    assert record.session_id == f"conversation-{conversation.id}"
    await tab.close()


async def test_regenerate_writes_another_version_of_the_reply(alice, conversation, provider):
    await Model.objects.acreate(provider=provider, upstream_id="flaky", name="flaky")  # breaks once, then answers
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="try this once more", model="flaky")
    await tab.read_reply(status="error")
    failed = await assistant_of(conversation)
    assert (failed.status, failed.content) == ("error", "Echo: try this")
    await tab.send(action="regenerate", message_id=failed.id)
    frames = await tab.read_reply()
    # The branch is sent again: the new reply in place of the failed one, which stays a version.
    assert frames[0].startswith('<div id="messages"') and f'id="msg-{failed.id}"' not in frames[0]
    reply = await assistant_of(conversation)
    assert reply.id != failed.id and (reply.status, reply.content) == ("complete", "Echo: try this once more")
    assert reply.parent_id == failed.parent_id
    assert f'id="msg-{reply.id}"' in frames[-1] and "Echo: try this once more" in frames[-1]
    assert '<span class="version-count">2 / 2</span>' in frames[-1] and "Previous version" in frames[-1]
    kept = await Message.objects.aget(pk=failed.pk)
    assert (kept.status, kept.content) == ("error", "Echo: try this")
    await tab.close()


async def test_a_message_is_refused_in_place_while_a_reply_is_being_written(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="go", model="long")
    await tab.read_until(lambda f: "beforeend" in f)
    await tab.send(message="again", model="echo")
    notice = (await tab.read_until(lambda f: 'id="composer-notice"' in f))[-1]
    assert "A reply is still being written: wait for it or press Stop." in notice and 'role="alert"' in notice
    assert 'class="message user' not in notice  # nothing was added to the conversation
    assert not await Message.objects.filter(conversation=conversation, content="again").aexists()
    await tab.send(action="stop")
    await tab.read_reply(status="cancelled")
    await tab.close()


async def test_an_empty_message_is_explained_and_nothing_is_stored(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="   ", model="echo")
    await tab.read_until(lambda f: "Type a message first." in f)
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await tab.close()


async def test_a_model_the_site_does_not_have_is_explained(alice, conversation):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hi", model="no-such-model")
    await tab.read_until(lambda f: "no-such-model" in f and "composer-notice" in f)
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await tab.close()


async def test_a_reply_left_streaming_by_a_dead_process_shows_as_interrupted(alice, conversation):
    orphan = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming", content="half")
    # Not saved for longer than CHAT_STALE_SECONDS: its process is gone, on any channel layer.
    await Message.objects.filter(pk=orphan.pk).aupdate(updated_at=orphan.updated_at - timedelta(minutes=5))
    tab = Tab(alice, conversation.id)
    await tab.connect()
    frames = await tab.read_reply(status="interrupted")
    assert orphan.id in message_ids(frames)
    await orphan.arefresh_from_db()
    assert orphan.status == "interrupted" and orphan.content == "half"
    await tab.close()


async def test_a_page_load_that_finds_a_dead_reply_tells_the_tabs_already_open(alice, conversation, client):
    tab = Tab(alice, conversation.id)
    await tab.connect()
    # Nothing else may find the dead reply: the tab's own catch-up is over (it answers in order),
    # and this process's sweep, started by the tab, is stopped.
    await tab.send(action="ready?")
    await tab.read_until(lambda f: "unknown action" in f)
    await sweeper.stop()
    orphan = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming", content="half")
    await Message.objects.filter(pk=orphan.pk).aupdate(updated_at=orphan.updated_at - timedelta(minutes=5))
    await sync_to_async(client.force_login)(alice)
    page = await sync_to_async(client.get)(f"/c/{conversation.id}/")  # another tab (re)loads the page
    assert page.status_code == 200
    frames = await tab.read_reply(status="interrupted")
    assert orphan.id in message_ids(frames) and "half" in frames[-1]
    await tab.close()


@pytest.mark.skipif(REDIS, reason="with one process (in-memory layer) a reply with no task is known dead at once")
async def test_with_one_process_a_reply_with_no_task_is_interrupted_at_once(alice, conversation):
    orphan = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming", content="half")
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.read_reply(status="interrupted")
    await orphan.arefresh_from_db()
    assert orphan.status == "interrupted"
    await tab.close()
