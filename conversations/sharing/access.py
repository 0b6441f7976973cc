"""Asking the rule (`Conversation.objects.readable_by`) about one conversation, and telling the
sockets open on a conversation to ask it again when the answer may have changed."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string

from conversations.chat import hub
from conversations.models import Conversation

log = logging.getLogger("chatsite.chat")

READ_ONLY = "This conversation is shared with you read-only: Continue in my chats to write in a copy of your own."
NO_LONGER_SHARED = "This conversation is no longer shared with you."
CHANGED = "sharing.changed"  # the channel-layer event: the consumers ask the rule again


def can_read(user, conversation_id: int) -> bool:
    return Conversation.objects.readable_by(user).filter(pk=conversation_id).exists()


async def acan_read(user, conversation_id: int) -> bool:
    return await Conversation.objects.readable_by(user).filter(pk=conversation_id).aexists()


def revoked_frame() -> str:
    """For a reader's open tab once they may no longer read: the messages taken off the page."""
    return render_to_string("conversations/sharing.html#revoked", {"notice": NO_LONGER_SHARED})


def recheck(group: str) -> None:
    """Once the transaction commits, every socket in `group` (a conversation's, a member's) asks
    the rule again, in every process; one that may no longer read is closed."""

    def send():
        try:
            async_to_sync(get_channel_layer().group_send)(group, {"type": CHANGED})
        except Exception:  # the channel layer down: each socket still asks again on its next action
            log.exception("could not tell the sockets of %s that sharing changed", group)

    transaction.on_commit(send)


def recheck_conversation(conversation_id: int) -> None:
    recheck(hub.conversation_group(conversation_id))
