"""What the upstream is sent for a reply: the system prompt and the conversation so far (the
messages above it on its branch of the tree, never those of other branches)."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from conversations.chat.tree import Tree
from conversations.gateway.usage import estimate_tokens
from conversations.models import Conversation, Message

# Room kept for the reply itself when trimming to the context window.
REPLY_RESERVE_TOKENS = 1024
PER_MESSAGE_TOKENS = 4  # role and separators


async def messages_for_reply(conversation: Conversation, reply: Message, context_window: int | None) -> list[dict]:
    """The history above `reply`, oldest first, trimmed from the oldest to fit the context window."""
    return await sync_to_async(_messages_for_reply)(conversation, reply, context_window)  # one hop


def _messages_for_reply(conversation: Conversation, reply: Message, context_window: int | None) -> list[dict]:
    tree = Tree.of(conversation.id)
    above = tree.path_to(reply.id)[:-1] if reply.id in tree.parents else []
    rows = Message.objects.filter(pk__in=above).exclude(content="")
    history = [{"role": m.role, "content": m.content} for m in rows.order_by("id").only("role", "content")]
    system = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
    if context_window:
        budget = context_window - REPLY_RESERVE_TOKENS - sum(_cost(m) for m in system)
        history = _trim(history, budget)
    return system + history



def _cost(message: dict) -> int:
    return estimate_tokens(message["content"]) + PER_MESSAGE_TOKENS


def _trim(history: list[dict], budget: int) -> list[dict]:
    kept, used = [], 0
    for message in reversed(history):
        used += _cost(message)
        if used > budget and kept:  # the latest message always goes, even alone over budget
            break
        kept.append(message)
    return kept[::-1]
