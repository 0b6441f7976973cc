"""The chat websocket: /ws/conversations/<id>/, one per open tab.

Thin on purpose: what a tab asks for is done by conversations.chat.actions, and replies are
written by tasks of their own (conversations.chat.replies), which deliver to this socket through
the hub. What lives here is keeping one tab in step: catching up on connect, and skipping the
fragments of a reply that the tab's snapshot of it already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Q

from conversations.chat import actions, frames, hub, replies
from conversations.chat.replies import RUNNING
from conversations.models import Conversation, Message

SNAPSHOT_WAIT_SECONDS = 2.0


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation: Conversation | None = None

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        pk = self.scope["url_route"]["kwargs"]["pk"]
        self.conversation = await Conversation.objects.select_related("model").filter(pk=pk, owner=user).afirst()
        if self.conversation is None:
            await self.close(code=4403)
            return
        self.seen: dict[int, int] = {}  # message id -> last fragment this tab has
        self.waiting: dict[int, list[tuple[int, str]]] = {}  # fragments held until a snapshot arrives
        await self.accept()
        await self.channel_layer.group_add(hub.conversation_group(pk), self.channel_name)
        hub.join(pk, self)
        await self.catch_up(_since(self.scope))

    async def disconnect(self, code):
        if self.conversation is not None:
            hub.leave(self.conversation.id, self)
            await self.channel_layer.group_discard(hub.conversation_group(self.conversation.id), self.channel_name)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            return
        user, conversation = self.scope["user"], self.conversation
        action = content.get("action") or "send"
        try:
            if action == "send":
                await actions.send_message(user, conversation, str(content.get("message") or ""),
                                           content.get("model") or None, content.get("template"))
            elif action == "stop":
                await actions.stop(conversation)
            elif action == "regenerate":
                await actions.regenerate(user, conversation, content.get("message_id"))
        except actions.ChatError as exc:
            await self.send(text_data=frames.notice(str(exc)))

    # -- delivery (called by the hub, from reply tasks of this process)

    async def deliver(self, frame: str, message_id: int | None, seq: int | None) -> None:
        if seq is not None:
            if message_id in self.waiting:
                self.waiting[message_id].append((seq, frame))
                return
            if seq <= self.seen.get(message_id, 0):
                return
            self.seen[message_id] = seq
        await self.send(text_data=frame)

    async def chat_frame(self, event):
        """A frame from a reply written by another process."""
        if event["origin"] != hub.PROCESS_ID:
            await self.deliver(event["frame"], event["message_id"], event["seq"])

    async def chat_snapshot(self, event):
        """The text so far of a reply written by another process, asked for in catch_up."""
        held = self.waiting.pop(event["message_id"], None)
        if held is None:
            return  # it came too late: the stored version was sent instead
        self.seen[event["message_id"]] = event["seq"]
        await self.send(text_data=event["frame"])
        for seq, frame in held:
            await self.deliver(frame, event["message_id"], seq)

    # -- catching up

    async def catch_up(self, since: datetime | None) -> None:
        """Send what changed since the page was rendered (all of it again after a dropped
        connection), and the text so far of a reply being written."""
        interrupted = await replies.interrupt_stale(self.conversation.id)  # every tab is told
        changed = Q(status=Message.Status.STREAMING) | Q(pk__in=interrupted)
        if since:
            changed |= Q(updated_at__gte=since)
        rows = self.conversation.messages.filter(changed).order_by("id")
        async for message in rows:
            if message.status == Message.Status.STREAMING:
                await self.catch_up_reply(message)
            else:
                await self.send(text_data=frames.message(message))

    async def catch_up_reply(self, message: Message) -> None:
        if reply := RUNNING.get(message.id):
            frame, self.seen[message.id] = reply.snapshot()
            await self.send(text_data=frame)
        elif hub.crosses_processes():
            self.waiting[message.id] = []
            await self.send(text_data=frames.message(message))
            await self.channel_layer.group_send(
                hub.reply_group(message.id), {"type": "reply.snapshot", "reply_channel": self.channel_name}
            )
            asyncio.get_running_loop().call_later(SNAPSHOT_WAIT_SECONDS, self.waiting.pop, message.id, None)
        else:  # one process and no task: the process that wrote it is gone (every tab is told)
            await replies.interrupt(Message.objects.filter(pk=message.id))


def _since(scope) -> datetime | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("since")
    with contextlib.suppress(ValueError, TypeError, OverflowError, IndexError):
        return datetime.fromtimestamp(float(values[0]), tz=UTC)
    return None
