"""Import conversations from a file: our own JSON export (one conversation, or a list of them),
ChatGPT's `conversations.json` (each conversation's `mapping` tree), Open WebUI's export.

Everything is read and checked first; then all of it is written in one transaction, so a bad file
imports nothing. Branches are not kept yet: a tree (ChatGPT's, Open WebUI's) imports as the
branch it was showing (ChatGPT's `current_node`, Open WebUI's `currentId`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from conversations.chat import tree
from conversations.library.titles import first_words
from conversations.models import Conversation, Message, Model
from conversations.transfer.export import FORMAT

MAX_BYTES = 50 * 1024 * 1024
ROLES = {"user", "assistant", "system", "tool"}


class BadImport(Exception):
    """The file cannot be imported; the message says why, and nothing was imported."""


@dataclass
class Parsed:
    title: str
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # role, content, model
    model: str = ""
    system_prompt: str = ""
    updated_at: datetime | None = None


def read(data: bytes) -> list[Parsed]:
    if len(data) > MAX_BYTES:
        raise BadImport(f"That file is too large ({len(data):,} bytes; the limit is {MAX_BYTES:,}).")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadImport(f"That file is not JSON ({exc}).") from exc
    items = document.get("conversations", [document]) if isinstance(document, dict) else document
    if not isinstance(items, list) or not items:
        raise BadImport("That file holds no conversations.")
    parsed = []
    for number, item in enumerate(items, 1):
        try:
            parsed.append(_one(item))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadImport(f"Conversation {number} in that file cannot be read ({exc!r}): nothing was imported.") from exc
    return parsed


def _one(item: dict) -> Parsed:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    if item.get("format") == FORMAT:
        return _ours(item)
    if "mapping" in item:
        return _chatgpt(item)
    if isinstance(item.get("chat"), dict):
        return _open_webui(item)
    raise ValueError("neither a Chatsite export, ChatGPT's conversations.json nor Open WebUI's export")


def _ours(item: dict) -> Parsed:
    messages = [(m["role"], str(m["content"]), str(m.get("model") or "")) for m in item["messages"]]
    return Parsed(str(item.get("title") or ""), messages, str(item.get("model") or ""),
                  str(item.get("system_prompt") or ""), _time(item.get("updated_at")))


def _chatgpt(item: dict) -> Parsed:
    mapping = item["mapping"]
    node = item.get("current_node") or _last_leaf(mapping)
    path = []
    while node:
        path.append(mapping[node])
        node = mapping[node].get("parent")
    messages = []
    for entry in reversed(path):
        message = entry.get("message") or {}
        role = (message.get("author") or {}).get("role")
        content = message.get("content") or {}
        text = "\n".join(p for p in content.get("parts") or () if isinstance(p, str)).strip()
        if content.get("content_type", "text") == "text" and text and role in ROLES:
            messages.append((role, text, str((message.get("metadata") or {}).get("model_slug") or "")))
    return Parsed(str(item.get("title") or ""), messages, updated_at=_time(item.get("update_time")))


def _last_leaf(mapping: dict) -> str | None:
    leaves = [key for key, node in mapping.items() if not node.get("children")]
    return leaves[-1] if leaves else None


def _open_webui(item: dict) -> Parsed:
    chat = item["chat"]
    history = chat.get("history") or {}
    if history.get("messages") and history.get("currentId"):
        found, node = [], history["currentId"]
        while node:
            found.append(history["messages"][node])
            node = history["messages"][node].get("parentId")
        entries = list(reversed(found))
    else:
        entries = chat.get("messages") or []
    messages = [(m["role"], str(m.get("content") or ""), str(m.get("model") or "")) for m in entries
                if m.get("role") in ROLES and str(m.get("content") or "").strip()]
    models = chat.get("models") or []
    return Parsed(str(item.get("title") or chat.get("title") or ""), messages, str(models[0]) if models else "",
                  str((chat.get("params") or {}).get("system") or chat.get("system") or ""),
                  _time(item.get("updated_at")))


def _time(value) -> datetime | None:
    """ISO 8601, or seconds since 1970 (ChatGPT, Open WebUI; Open WebUI's newer exports in ns)."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        while seconds > 1e11:  # milli-, micro- or nanoseconds
            seconds /= 1000
        return datetime.fromtimestamp(seconds, tz=UTC)
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else timezone.make_aware(moment)


@dataclass
class Report:
    conversations: int
    messages: int

    def __str__(self) -> str:
        c, m = self.conversations, self.messages
        return f"Imported {c} conversation{'s' * (c != 1)} ({m} message{'s' * (m != 1)})."


def save(user, parsed: list[Parsed]) -> Report:
    """All of it, or (on any error) none of it."""
    for number, p in enumerate(parsed, 1):
        bad = {role for role, _, _ in p.messages} - ROLES
        if bad:
            raise BadImport(f"Conversation {number} has messages of an unknown role ({', '.join(sorted(bad))}): nothing was imported.")
    models = {m.name: m for m in Model.objects.usable_by(user)}
    count = 0
    with transaction.atomic():
        for p in parsed:
            title = first_words(p.title) or (first_words(p.messages[0][1]) if p.messages else "Imported chat")
            conversation = Conversation.objects.create(owner=user, title=title, model=models.get(p.model),
                                                       system_prompt=p.system_prompt, title_set_by_member=True)
            tree.chain(conversation, [Message(role=role, content=content, model=model) for role, content, model in p.messages])
            count += len(p.messages)
            if p.updated_at:  # it keeps its place in the list's days
                Conversation.objects.filter(pk=conversation.pk).update(updated_at=p.updated_at)
    return Report(len(parsed), count)
