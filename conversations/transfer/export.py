"""One conversation as a file: Markdown to read, JSON to import again (conversations.transfer.imports)."""

from __future__ import annotations

from conversations.models import Conversation, Message

FORMAT = "chatsite.conversation"
VERSION = 1
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}


def _has_parent() -> bool:
    # Messages gain a parent when conversations become trees; until then the order is the chain.
    return any(field.name == "parent" for field in Message._meta.get_fields())


def as_json(conversation: Conversation) -> dict:
    with_parent = _has_parent()
    messages = []
    for m in conversation.messages.order_by("id"):
        item = {"id": m.id, "role": m.role, "content": m.content, "model": m.model, "status": m.status,
                "created_at": m.created_at.isoformat()}
        if m.reasoning:
            item["reasoning"] = m.reasoning
        if with_parent:
            item["parent"] = m.parent_id
        messages.append(item)
    return {
        "format": FORMAT, "version": VERSION, "title": conversation.title,
        "model": conversation.model.name if conversation.model else None,
        "system_prompt": conversation.system_prompt,
        # The Chat settings (conversations.chatsettings): request parameters, preset and its slot values.
        "parameters": conversation.parameters or {},
        "preset": conversation.template.name if conversation.template else None,
        "variables": conversation.variables or {},
        "created_at": conversation.created_at.isoformat(), "updated_at": conversation.updated_at.isoformat(),
        "messages": messages,
    }


def as_markdown(conversation: Conversation) -> str:
    parts = [f"# {conversation.title}\n"]
    if conversation.system_prompt:
        parts.append(f"**System prompt**\n\n{conversation.system_prompt}\n")
    for m in conversation.messages.order_by("id"):
        who = ROLE_NAMES.get(m.role, m.role)
        if m.role == Message.Role.ASSISTANT and m.model:
            who += f" ({m.model})"
        parts.append(f"## {who}\n\n{m.content}\n")
    return "\n".join(parts)
