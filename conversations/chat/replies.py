"""A reply being written: its own task, owned by no websocket.

`Reply.start()` runs the generation as an asyncio task registered in this process. It streams
from the gateway, publishes batched fragments to every tab (`hub.publish`, about every 50 ms), and
ends by saving the finished message and swapping it in, rendered. Meanwhile the process's saver
writes the text so far of all its replies every CHAT_SAVE_SECONDS, in one statement and one
transaction (a statement, a transaction and a hop to the database thread per reply each second
were the largest cost of a streaming reply: scripts/bench_capacity.py); that save is also the
heartbeat that tells a live reply from one whose process died.

Control reaches the task wherever it runs through the channel layer group `reply.<id>`: "stop"
cancels it (and so the upstream request), "snapshot" asks for the text so far for a tab that
connects mid-reply on another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from datetime import timedelta

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from conversations.chat import frames, hub
from conversations.chat.history import messages_for_reply
from conversations.chat.tree import Tree
from conversations.chatsettings import panel as chatsettings
from conversations.gateway import pipeline
from conversations.gateway.errors import GatewayError
from conversations.gateway.validation import validate_chat_request
from conversations.library import titles
from conversations.models import Conversation, Message
from conversations.models.chat import INTERRUPTED_ERROR
from conversations.observability import metrics

log = logging.getLogger("chatsite.chat")

RUNNING: dict[int, Reply] = {}  # message id -> reply being written in this process
_savers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


class Reply:
    def __init__(self, conversation: Conversation, message: Message, caller: pipeline.Caller):
        self.conversation = conversation
        self.message = message
        self.caller = caller
        self.text = ""  # published so far
        self.reasoning = ""
        self.seq = 0  # fragments published so far
        self._pending_text: list[str] = []
        self._pending_reasoning: list[str] = []
        self.finish_reason = ""
        self.usage: dict | None = None
        self.stop_requested = False
        self.plan: pipeline.Plan | None = None
        self.task: asyncio.Task | None = None

    # -- control

    def start(self) -> Reply:
        RUNNING[self.message.id] = self
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"reply-{self.message.id}")
        metrics.REPLIES_STREAMING.inc()
        self.task.add_done_callback(lambda _: metrics.REPLIES_STREAMING.dec())
        _ensure_saver()
        return self

    def stop(self) -> None:
        if self.task and not self.task.done():
            self.stop_requested = True
            self.task.cancel()

    def snapshot(self) -> tuple[str, int]:
        """The message as published so far, and the number of its last fragment."""
        return frames.message(self.message, text=self.text, reasoning=self.reasoning), self.seq

    # -- the task

    async def _run(self) -> None:
        helpers = [asyncio.create_task(self._publish_regularly()), asyncio.create_task(self._listen())]
        try:
            status, error = await self._generate_until_done()
        except asyncio.CancelledError:  # the server is shutting down, not a "Stop"
            await _cancel(helpers)
            try:
                await asyncio.shield(self._finish(Message.Status.INTERRUPTED, INTERRUPTED_ERROR))
            finally:
                RUNNING.pop(self.message.id, None)
            raise
        # The helpers end before the final save, so no fragment can follow the finished message;
        # the reply leaves RUNNING only once saved, so a tab never finds it "streaming" with no task.
        await _cancel(helpers)
        try:
            await self._finish(status, error)
            await titles.name_after_first_reply(self.conversation, self.message, self.caller.user, self.caller.profile)
        finally:
            RUNNING.pop(self.message.id, None)

    async def _generate_until_done(self) -> tuple[str, str]:
        try:
            await self._generate()
        except asyncio.CancelledError:
            if not self.stop_requested:
                raise
            asyncio.current_task().uncancel()
            return Message.Status.CANCELLED, ""
        except GatewayError as exc:
            return Message.Status.ERROR, exc.message
        except Exception:
            log.exception("reply %s failed", self.message.id)
            return Message.Status.ERROR, "Something went wrong while writing this reply."
        return Message.Status.COMPLETE, ""

    async def _generate(self) -> None:
        model = self.conversation.model
        messages = await messages_for_reply(self.conversation, self.message, model.context_window,
                                            vision=model.supports_vision)
        body = {"model": model.name, "messages": messages, "stream": True, "stream_options": {"include_usage": True},
                **await chatsettings.arequest_fields(self.conversation)}
        # Checked as a /v1 body is: the settings were when saved, and are again as they are now.
        plan = self.plan = await pipeline.plan(self.caller, validate_chat_request(body))
        async with contextlib.aclosing(pipeline.stream(plan)) as batches:
            async for batch in batches:
                for chunk in batch:
                    self._take(chunk.data)

    def _take(self, chunk: dict) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._pending_text.append(delta["content"])
            if delta.get("reasoning_content"):
                self._pending_reasoning.append(delta["reasoning_content"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    async def _publish_pending(self) -> None:
        if not (self._pending_text or self._pending_reasoning):
            return
        text, reasoning = "".join(self._pending_text), "".join(self._pending_reasoning)
        self._pending_text.clear()
        self._pending_reasoning.clear()
        self.text += text
        self.reasoning += reasoning
        self.seq += 1
        await hub.publish(self.conversation.id, frames.fragment(self.message.id, text, reasoning),
                          message_id=self.message.id, seq=self.seq)

    async def _publish_regularly(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_BATCH_SECONDS)
            await self._publish_pending()

    async def _listen(self) -> None:
        """Stop and snapshot requests from tabs on any process."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        group = hub.reply_group(self.message.id)
        await layer.group_add(group, channel)
        try:
            while True:
                event = await layer.receive(channel)
                if event["type"] == "reply.stop":
                    self.stop()
                elif event["type"] == "reply.snapshot":
                    hub.heard_elsewhere(self.conversation.id)  # before the snapshot: no fragment missed
                    frame, seq = self.snapshot()
                    await layer.send(event["reply_channel"], {"type": "chat.snapshot", "message_id": self.message.id, "frame": frame, "seq": seq})
        finally:
            await layer.group_discard(group, channel)

    async def _finish(self, status: str, error: str = "") -> None:
        msg = self.message
        msg.content = self.text + "".join(self._pending_text)
        msg.reasoning = self.reasoning + "".join(self._pending_reasoning)
        msg.status, msg.error, msg.finish_reason = status, error, self.finish_reason
        if self.usage:
            msg.prompt_tokens = self.usage.get("prompt_tokens")
            msg.completion_tokens = self.usage.get("completion_tokens")
        await msg.asave(update_fields=["content", "reasoning", "status", "error", "finish_reason",
                                       "prompt_tokens", "completion_tokens", "updated_at"])
        if self.plan and self.plan.settled:  # its row may not be written yet: the settled record
            msg.usage_record = self.plan.settled[-1]
        await hub.publish(self.conversation.id, frames.message(msg))


def _ensure_saver() -> None:
    loop = asyncio.get_running_loop()
    task = _savers.get(loop)
    if task is None or task.done():
        _savers[loop] = loop.create_task(_save_regularly(loop), name="chatsite-reply-saver")


async def _save_regularly(loop: asyncio.AbstractEventLoop) -> None:
    """Every CHAT_SAVE_SECONDS, the text so far of every reply this event loop writes, at once; ends
    when there is none. A reply that ends meanwhile is not touched (its final save wins)."""
    while True:
        await asyncio.sleep(settings.CHAT_SAVE_SECONDS)
        writing = [r for r in list(RUNNING.values()) if r.task is not None and r.task.get_loop() is loop]
        if not writing:
            return
        try:
            await sync_to_async(Message.objects.save_progress)(
                [(r.message.id, r.text, r.reasoning) for r in writing])
        except Exception:  # a database hiccup: the next round writes it all again
            log.exception("could not save the progress of %d replies", len(writing))


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def request_stop(message_id: int) -> None:
    """Stop a reply wherever it runs: directly here, or through the channel layer. A reply whose
    process died has no task to stop: it is marked interrupted (at once with one process; with
    several, once it goes unsaved for `liveness_seconds()` after the request)."""
    if reply := RUNNING.get(message_id):
        reply.stop()
        return
    saved_at = await (Message.objects.filter(pk=message_id, status=Message.Status.STREAMING)
                      .values_list("updated_at", flat=True).afirst())
    if saved_at is None:
        return
    if not hub.crosses_processes():  # one process, and no task in it: its writer is gone
        await interrupt(Message.objects.filter(pk=message_id, updated_at=saved_at))
        return
    await get_channel_layer().group_send(hub.reply_group(message_id), {"type": "reply.stop"})
    task = asyncio.get_running_loop().create_task(_interrupt_if_unheard(message_id, saved_at))
    _watching.add(task)
    task.add_done_callback(_watching.discard)


_watching: set[asyncio.Task] = set()


def liveness_seconds() -> float:
    """A reply being written is saved every CHAT_SAVE_SECONDS: twice that, and a margin, unsaved
    after a Stop means no process is writing it."""
    return 2 * settings.CHAT_SAVE_SECONDS + 1


async def _interrupt_if_unheard(message_id: int, saved_at) -> None:
    deadline = time.monotonic() + liveness_seconds()
    latest = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, updated_at=saved_at)
    while time.monotonic() < deadline:
        if not await latest.aexists():  # stopped, finished or saved: a process is writing it
            return
        await asyncio.sleep(0.1)
    await interrupt(latest)


async def interrupt_stale(conversation_id: int | None = None) -> list[int]:
    """Replies not saved for CHAT_STALE_SECONDS (their process died), of one conversation or all:
    marked interrupted, and every tab on any process gets the final message."""
    messages = Message.objects.all() if conversation_id is None else Message.objects.filter(conversation_id=conversation_id)
    return await interrupt(messages, saved_before=timezone.now() - timedelta(seconds=settings.CHAT_STALE_SECONDS))


async def interrupt(messages, *, saved_before=None) -> list[int]:
    """These streaming messages, whose writer is gone: interrupted, and every tab told."""
    ids = await sync_to_async(messages.mark_interrupted)(saved_before=saved_before or timezone.now())
    await announce_interrupted(ids)
    return ids


async def announce_interrupted(ids: list[int]) -> None:
    """Every tab on any process gets these interrupted replies, as they now are."""
    if not ids:
        return
    async for message in Message.objects.filter(pk__in=ids):
        (await Tree.aof(message.conversation_id)).with_versions([message])  # its Previous/Next version
        await hub.publish(message.conversation_id, frames.message(message))
