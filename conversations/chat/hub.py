"""Delivery of chat frames to every tab open on a conversation.

Tabs served by this process are reached directly (a channel-layer hop per frame is what limits
how many streams a process holds); other processes are reached through the channel layer's
conversation group, and only when the layer crosses processes (Redis). Frames carry the id of
the process that sent them, so a process never delivers its own frames twice.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict

from channels.layers import InMemoryChannelLayer, get_channel_layer

log = logging.getLogger("chatsite.chat")

PROCESS_ID = secrets.token_hex(8)
_local: dict[int, set] = defaultdict(set)


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
    if crosses_processes():
        await get_channel_layer().group_send(
            conversation_group(conversation_id),
            {"type": "chat.frame", "origin": PROCESS_ID, "frame": frame, "message_id": message_id, "seq": seq},
        )
