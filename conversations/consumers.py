"""The chat websocket: /ws/conversations/<id>/, one per open tab.

Thin on purpose: what a tab asks for is done by conversations.chat.actions, and replies are
written by tasks of their own (conversations.chat.replies), which deliver to this socket through
the hub. What lives here is keeping one tab in step: catching up on connect, and skipping the
fragments of a reply that the tab's snapshot of it already holds.

Security: the origin was checked before this consumer runs (chatsite/origins.py), the login and
who may read the conversation at connect (`Conversation.objects.readable_by`: its owner, or a
member it is shared with); every action reads the session afresh (still logged in, still active),
and deactivating a member closes their open sockets through a per-user group (`disconnect_user`).
A reader (conversations.sharing) watches, read-only: every action of theirs is refused, and when
sharing changes (stopped, the reader taken off it or out of a group) their socket asks the rule
again and is closed if it no longer lets them read. A frame it cannot take is explained in place;
the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from importlib import import_module
from types import SimpleNamespace
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.db.models import Q

from conversations import connections, lifecycle
from conversations.attachments import store as attachment_store
from conversations.chat import actions, frames, hub, replies, tree
from conversations.chat.replies import RUNNING
from conversations.ids import parse_id
from conversations.models import Conversation, Message
from conversations.observability import metrics
from conversations.sharing import access

SNAPSHOT_WAIT_SECONDS = 2.0
CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN = 4401, 4403
DEACTIVATED = "Your account has been deactivated."
LOGGED_OUT = "You are no longer logged in here (logged out, or your account was changed). Reload the page."

log = logging.getLogger("chatsite.chat")


def user_group(user_id: int) -> str:
    """Every socket of one member, in every process: deactivation closes them."""
    return f"user.{user_id}"


async def disconnect_user(user_id: int) -> None:
    await get_channel_layer().group_send(user_group(user_id), {"type": "user.deactivated"})


class BadFrame(ValueError):
    """A frame the chat cannot take; its message is shown in place and the socket stays open."""


def parse_frame(text_data: str | None) -> dict:
    if text_data is None:
        raise BadFrame("The chat speaks JSON text frames only.")
    try:
        content = json.loads(text_data)
    except ValueError:
        raise BadFrame("That request was not understood (not JSON).") from None
    if not isinstance(content, dict):
        raise BadFrame("That request was not understood (expected a JSON object).")
    _check_storable(content)
    return content


def _check_storable(value) -> None:
    """NUL and unpaired surrogates cannot be stored (PostgreSQL, UTF-8): refused up front."""
    if isinstance(value, dict):
        for item in (*value.keys(), *value.values()):
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)
    elif isinstance(value, str):
        if "\x00" in value:
            raise BadFrame("That message contains a NUL character, which cannot be stored.")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise BadFrame("That message contains an unpaired surrogate character, which cannot be stored.") from None


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation: Conversation | None = None

    async def connect(self):
        await sync_to_async(connections.check_here)()  # in the database thread, which owns them
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        pk = self.scope["url_route"]["kwargs"]["pk"]
        self.conversation = await Conversation.objects.readable_by(user).select_related("model").filter(pk=pk).afirst()
        if self.conversation is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.reading = self.conversation.owner_id != user.pk  # shared with them: read-only
        self.seen: dict[int, int] = {}  # message id -> last fragment this tab has
        self.waiting: dict[int, list[tuple[int, str]]] = {}  # fragments held until a snapshot arrives
        await self.accept()
        metrics.WEBSOCKETS_OPEN.inc()
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        await self.channel_layer.group_add(hub.conversation_group(pk), self.channel_name)
        hub.join(pk, self)
        await self.catch_up(_since(self.scope))

    async def disconnect(self, code):
        if self.conversation is not None:
            metrics.WEBSOCKETS_OPEN.dec()
            hub.leave(self.conversation.id, self)
            await self.channel_layer.group_discard(hub.conversation_group(self.conversation.id), self.channel_name)
            await self.channel_layer.group_discard(user_group(self.scope["user"].pk), self.channel_name)

    async def dispatch(self, message):
        """As Channels' own, less the close_old_connections() it runs before every message: a hop
        to the database thread that closed the connection the whole process shares, for each
        frame a tab gets through the channel layer (conversations.connections: the connection is
        kept, and checked on each action of a tab instead)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message):
        """As Channels' own (this consumer has no `groups` of its own), less its
        close_old_connections()."""
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = parse_frame(text_data)
        except BadFrame as exc:
            await self.send(text_data=frames.notice(str(exc)))
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        user, conversation = self.scope["user"], self.conversation
        if not await self.still_logged_in():
            await self.send(text_data=frames.notice(LOGGED_OUT))
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if self.reading:
            await self.refuse_reader()
            return
        action = content.get("action") or "send"
        if action != "stop" and lifecycle.draining():  # shutting down: no new replies here
            await self.send(text_data=frames.notice(lifecycle.RESTARTING))
            return
        try:
            if action == "send":
                await actions.send_message(user, conversation, str(content.get("message") or ""),
                                           content.get("model") or None, content.get("template"),
                                           content.get("attachments"))
            elif action == "stop":
                await actions.stop(conversation)
            elif action == "regenerate":
                await actions.regenerate(user, conversation, content.get("message_id"))
            elif action == "edit":
                await actions.edit(user, conversation, content.get("message_id"), str(content.get("message") or ""))
            elif action == "switch":
                await actions.switch(conversation, content.get("message_id"))
            else:
                raise actions.ChatError("That request was not understood (unknown action).")
        except actions.ChatError as exc:
            await self.send(text_data=frames.notice(str(exc)))
        except Exception:
            # One bad request must not end the tab's socket (and its view of a running reply).
            log.exception("chat action %r failed in conversation %s", action, conversation.pk)
            await self.send(text_data=frames.notice("That request failed. Try again, or reload the page."))

    async def still_logged_in(self) -> bool:
        """Asked on every action, as a page request would: the session read afresh (logged out
        elsewhere, password changed) and the member still active. A few indexed reads."""
        user = self.scope["user"]
        session = self.scope.get("session")  # None: mounted without the session stack
        return await sync_to_async(_still_signed_in)(session.session_key if session else None, user.pk)

    async def refuse_reader(self) -> None:
        """A reader's every action: refused (closed, if they may not even read it any more)."""
        if not await self.still_reads():
            return
        await self.send(text_data=frames.notice(access.READ_ONLY))

    async def still_reads(self) -> bool:
        """Asks the rule again; a socket it no longer lets read is told so, and closed."""
        if await access.acan_read(self.scope["user"], self.conversation.id):
            return True
        hub.leave(self.conversation.id, self)  # not one more frame of it
        await self.channel_layer.group_discard(hub.conversation_group(self.conversation.id), self.channel_name)
        await self.send(text_data=access.revoked_frame())
        await self.close(code=CLOSE_FORBIDDEN)
        return False

    async def sharing_changed(self, event):
        await self.still_reads()

    async def user_deactivated(self, event):
        await self.send(text_data=frames.notice(DEACTIVATED))
        await self.close(code=CLOSE_UNAUTHENTICATED)

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
        """Send what changed on the branch shown since the page was rendered (all of it again
        after a dropped connection; the whole branch if another tab went to another one), and
        the text so far of a reply being written."""
        interrupted = await replies.interrupt_stale(self.conversation.id)  # every tab is told
        leaf = await Conversation.objects.filter(pk=self.conversation.id).values_list("current_leaf_id", flat=True).afirst()
        shown_leaf = _query_int(self.scope, "leaf")
        if shown_leaf is not None and shown_leaf != leaf:
            await self.conversation.arefresh_from_db(fields=["current_leaf"])
            shown = await tree.apage(self.conversation, size=tree.PAGE_MESSAGES)
            await self.send(text_data=frames.thread(self.conversation, shown.messages, shown.has_earlier))
        shape = await tree.Tree.aof(self.conversation.id)
        changed = Q(status=Message.Status.STREAMING) | Q(pk__in=interrupted)
        if since:
            changed |= Q(updated_at__gte=since)
        rows = [m async for m in self.conversation.messages.filter(changed, pk__in=shape.path(leaf)).order_by("id")]
        await sync_to_async(tree.attach_usage)(shape.with_versions(rows))
        await attachment_store.alist_for(rows)
        for message in rows:
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


def _still_signed_in(session_key: str | None, user_id: int) -> bool:
    """The first thing done for each action, in one hop to the database thread: its connection
    checked there (one that died meanwhile is replaced, not reused), then the member."""
    connections.check_here()
    if session_key is None:
        return get_user_model().objects.filter(pk=user_id, is_active=True).exists()
    return _signed_in_user_id(session_key) == user_id


def _signed_in_user_id(session_key: str | None) -> int | None:
    """Who that session signs in now, as a page request would find it (the session read afresh,
    its hash checked against the member's password, the member active), in one hop."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return auth.get_user(SimpleNamespace(session=store)).pk


def _since(scope) -> datetime | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("since")
    with contextlib.suppress(ValueError, TypeError, OverflowError, IndexError):
        return datetime.fromtimestamp(float(values[0]), tz=UTC)
    return None


def _query_int(scope, name: str) -> int | None:
    return parse_id((parse_qs(scope.get("query_string", b"").decode()).get(name) or [""])[0])
