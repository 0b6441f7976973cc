"""Delivery of chat frames to every tab open on a conversation.

Tabs served by this process are reached directly (a channel-layer hop per frame is what limits
how many streams a process holds); other processes are reached through the channel layer's
conversation group, and only when the layer crosses processes (Redis). Frames carry the id of
the process that sent them, so a process never delivers its own frames twice.

A reply's fragments (20 a second) go to Redis only while another process has a tab on the
conversation: each message sent to Redis says how many other processes listen (Redis' count of
subscribers reached), and that answer is kept for `ELSEWHERE_SECONDS`, after which the next
fragment asks again. A tab that opens on another process meanwhile asks the reply for its text
so far (conversations.consumers: catch_up), which is heard as "someone listens elsewhere"
(`heard_elsewhere`) before the snapshot is taken, so it misses no fragment after it. Most tabs
are on the process that writes their reply, and their frames then never leave it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict

from cachetools import TTLCache
from channels.layers import InMemoryChannelLayer, get_channel_layer

log = logging.getLogger("chatsite.chat")

PROCESS_ID = secrets.token_hex(8)
ELSEWHERE_SECONDS = 1.0
_local: dict[int, set] = defaultdict(set)
# conversation id -> (whether another process listened when last asked, when); bounded like the
# gateway's caches (an entry a few dozen bytes), and an entry gone means "ask again".
_elsewhere = TTLCache(maxsize=10_000, ttl=ELSEWHERE_SECONDS, timer=time.monotonic)


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def reply_group(message_id: int) -> str:
    return f"reply.{message_id}"


def crosses_processes() -> bool:
    return not isinstance(get_channel_layer(), InMemoryChannelLayer)


def join(conversation_id: int, subscriber) -> None:
    from conversations.chat import sweeper  # it publishes through this module

    # Servers without an ASGI lifespan (Daphne, runserver) start the sweep with their first tab:
    # a tab must not wait forever on a reply whose process died.
    sweeper.ensure_running()
    _local[conversation_id].add(subscriber)


def leave(conversation_id: int, subscriber) -> None:
    subscribers = _local.get(conversation_id)
    if subscribers is not None:
        subscribers.discard(subscriber)
        if not subscribers:
            del _local[conversation_id]


async def publish(conversation_id: int, frame: str, *, message_id: int | None = None, seq: int | None = None) -> None:
    """Send a frame to every tab on the conversation. `seq` numbers a reply's fragments, so a tab
    that caught up from a snapshot skips the fragments the snapshot already holds."""
    for subscriber in list(_local.get(conversation_id, ())):
        try:
            await subscriber.deliver(frame, message_id, seq)
        except Exception:  # one broken socket must not stop the reply reaching the others
            log.debug("could not deliver to a subscriber", exc_info=True)
    if crosses_processes() and (seq is None or _listened_elsewhere(conversation_id)):
        layer = get_channel_layer()
        event = {"type": "chat.frame", "origin": PROCESS_ID, "frame": frame, "message_id": message_id, "seq": seq}
        if not hasattr(layer, "group_send_elsewhere"):  # another layer: every frame goes
            await layer.group_send(conversation_group(conversation_id), event)
            return
        asked = time.monotonic()
        others = await layer.group_send_elsewhere(conversation_group(conversation_id), event)
        known = _elsewhere.get(conversation_id)
        # An answer does not undo a tab heard of while it was on its way (it may not count it).
        if others is not None and (others > 0 or known is None or known[1] <= asked):
            _elsewhere[conversation_id] = (others > 0, asked)


def _listened_elsewhere(conversation_id: int) -> bool:
    known = _elsewhere.get(conversation_id)
    return known is None or known[0]


def heard_elsewhere(conversation_id: int) -> None:
    """A tab on another process asked for a reply of this conversation: its fragments go there."""
    _elsewhere[conversation_id] = (True, time.monotonic())
