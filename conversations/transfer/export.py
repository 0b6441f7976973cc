"""One conversation as a file: Markdown to read (the branch shown), JSON to import again
(conversations.transfer.imports): every message of every branch with its id and its parent's,
the branch shown (`current_leaf`), and the conversation's settings."""

from __future__ import annotations

import json

from conversations.chat.tree import Tree
from conversations.models import Conversation, Message

FORMAT = "chatsite.conversation"
VERSION = 2  # 1: no "settings" (its "model" and "system_prompt" at the top), "current_leaf" or "parent"
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}

# Conversation fields that are not its settings: who owns it, its place in the tree, its dates
# (written apart), and what an import decides for itself. Every other field is exported under
# "settings" and restored on import (a relation by its `name`), so fields added to the model
# later travel without changes here; a field that must not travel (sharing, say) goes in here.
NOT_SETTINGS = {"id", "owner", "title", "current_leaf", "created_at", "updated_at", "title_set_by_member"}
MESSAGE_FIELDS = ("role", "content", "reasoning", "model", "status", "error", "finish_reason",
                  "prompt_tokens", "completion_tokens")


def settings_fields() -> list:
    """The Conversation fields exported under "settings": plain values, and relations to models
    that have a name (the conversation's model, its preset)."""
    fields = []
    for field in Conversation._meta.concrete_fields:
        if field.name in NOT_SETTINGS:
            continue
        if field.is_relation and not any(f.name == "name" for f in field.related_model._meta.concrete_fields):
            continue
        fields.append(field)
    return fields


def _setting(conversation: Conversation, field):
    if field.is_relation:
        related = getattr(conversation, field.name)
        return related.name if related else None
    value = field.value_from_object(conversation)
    try:
        json.dumps(value)
    except TypeError:  # a Decimal, a date: as Django writes it in fixtures
        return field.value_to_string(conversation)
    return value


def as_json(conversation: Conversation) -> dict:
    """The conversation as a JSON document. `conversation.messages.all()` (ordered by id) may be
    prefetched: the zip of all of a member's data exports many at a time."""
    messages = []
    for m in conversation.messages.all():
        item = {"id": m.id, "parent": m.parent_id, "created_at": m.created_at.isoformat()}
        for name in MESSAGE_FIELDS:
            value = getattr(m, name)
            if value not in ("", None) or name in ("role", "content"):
                item[name] = value
        messages.append(item)
    return {
        "format": FORMAT, "version": VERSION, "title": conversation.title,
        "settings": {field.name: _setting(conversation, field) for field in settings_fields()},
        "created_at": conversation.created_at.isoformat(), "updated_at": conversation.updated_at.isoformat(),
        "current_leaf": conversation.current_leaf_id,
        "messages": messages,
    }


def as_markdown(conversation: Conversation) -> str:
    """The branch shown, to read."""
    path = Tree.of(conversation.pk).path(conversation.current_leaf_id)
    rows = Message.objects.in_bulk(path)
    parts = [f"# {conversation.title}\n"]
    if conversation.system_prompt:
        parts.append(f"**System prompt**\n\n{conversation.system_prompt}\n")
    for m in (rows[pk] for pk in path):
        who = ROLE_NAMES.get(m.role, m.role)
        if m.role == Message.Role.ASSISTANT and m.model:
            who += f" ({m.model})"
        parts.append(f"## {who}\n\n{m.content}\n")
    return "\n".join(parts)
