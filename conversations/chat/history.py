"""What the upstream is sent for a reply: the system prompt and the conversation so far (the
messages above it on its branch of the tree, never those of other branches), with their
attachments (conversations.attachments.upstream: fenced blocks, and images for vision models)."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from conversations.attachments import store, upstream
from conversations.chat.tree import Tree
from conversations.gateway.usage import estimate_tokens
from conversations.models import Conversation, Message

# Room kept for the reply itself when trimming to the context window.
REPLY_RESERVE_TOKENS = 1024
PER_MESSAGE_TOKENS = 4  # role and separators


async def messages_for_reply(conversation: Conversation, reply: Message, context_window: int | None, *,
                             vision: bool = False) -> list[dict]:
    """The history above `reply`, oldest first, trimmed from the oldest to fit the context window;
    images as image_url parts when the model has `vision`."""
    system, history = await sync_to_async(_history)(conversation, reply, context_window)  # one hop
    return system + [{"role": e.role, "content": await upstream.content(e.text, e.files, vision=vision)}
                     for e in history]


def _history(conversation: Conversation, reply: Message, context_window: int | None) -> tuple[list[dict], list[_Entry]]:
    tree = Tree.of(conversation.id)
    above = tree.path_to(reply.id)[:-1] if reply.id in tree.parents else []
    rows = list(Message.objects.filter(pk__in=above).exclude(content="").order_by("id").only("role", "content"))
    files = store.for_messages([m.id for m in rows if m.role == Message.Role.USER])
    history = [_Entry(m.role, upstream.with_text_files(m.content, files.get(m.id, [])), files.get(m.id, []))
               for m in rows]
    system = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
    if context_window:
        budget = context_window - REPLY_RESERVE_TOKENS - sum(_cost(m["content"]) for m in system)
        history = _trim(history, budget)
    return system, history


def room_for(conversation: Conversation, text: str) -> int | None:
    """The tokens a new message's attachments may take: the model's context window less the reply's
    reserve, the system prompt and the message's own text (None: the model gives no window)."""
    window = conversation.model.context_window if conversation.model else None
    if not window:
        return None
    system = _cost(conversation.system_prompt) if conversation.system_prompt else 0
    return window - REPLY_RESERVE_TOKENS - system - _cost(text)


class _Entry:
    def __init__(self, role: str, text: str, files: list):
        self.role, self.text, self.files = role, text, files
        self.cost = upstream.tokens(text, files) + PER_MESSAGE_TOKENS


def _cost(text: str) -> int:
    return estimate_tokens(text) + PER_MESSAGE_TOKENS


def _trim(history: list[_Entry], budget: int) -> list[_Entry]:
    kept, used = [], 0
    for entry in reversed(history):
        used += entry.cost
        if used > budget and kept:  # the latest message always goes, even alone over budget
            break
        kept.append(entry)
    return kept[::-1]
