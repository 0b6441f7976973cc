"""Import conversations from a file: our own JSON export (one conversation, or a list of them),
a zip of all of a member's data (conversations.transfer.archive), ChatGPT's `conversations.json`
(each conversation's `mapping` tree), Open WebUI's export (`chat.history`: messages with
`parentId`).

A conversation that is a tree there is a tree here: every branch is kept, and the branch it was
showing (ours: `current_leaf`, ChatGPT's `current_node`, Open WebUI's `currentId`) is the one
shown. Messages we do not keep (system prompts, hidden or empty ones, tool traffic) are left
out and their children hang from the nearest message kept above them.

Everything is read and checked first; then all of it is written in one transaction, so a bad file
imports nothing.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone

from conversations.chat import tree
from conversations.library.titles import first_words
from conversations.models import Conversation, Message, Model
from conversations.transfer.export import FORMAT, NOT_SETTINGS

MAX_BYTES = 50 * 1024 * 1024  # a file, and everything in a zip once unpacked
ROLES = {"user", "assistant", "system", "tool"}
CHAT_ROLES = {"user", "assistant"}  # what we keep from other products' trees
STATUSES = set(Message.Status.values) - {Message.Status.STREAMING}


class BadImport(Exception):
    """The file cannot be imported; the message says why, and nothing was imported."""


@dataclass
class Node:
    """A message read from a file: `key` is its id there, `parent` its parent's (None: a first message)."""

    key: str
    parent: str | None
    role: str
    content: str
    model: str = ""
    reasoning: str = ""
    status: str = Message.Status.COMPLETE
    error: str = ""
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: datetime | None = None


@dataclass
class Parsed:
    title: str
    messages: list[Node] = field(default_factory=list)  # parents before children, siblings in order
    current: str | None = None  # the key of the message whose branch is shown
    settings: dict = field(default_factory=dict)  # Conversation field -> value (a relation: its name)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def read(data: bytes) -> list[Parsed]:
    if len(data) > MAX_BYTES:
        raise BadImport(f"That file is too large ({len(data):,} bytes; the limit is {MAX_BYTES:,}).")
    items = _zip_items(data) if data[:4] == b"PK\x03\x04" else _items(data)
    if not items:
        raise BadImport("That file holds no conversations.")
    parsed = []
    for number, item in enumerate(items, 1):
        try:
            parsed.append(_one(item))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadImport(f"Conversation {number} in that file cannot be read ({exc!r}): nothing was imported.") from exc
    return parsed


def _items(data: bytes, name: str = "That file") -> list:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadImport(f"{name} is not JSON ({exc}).") from exc
    items = document.get("conversations", [document]) if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise BadImport(f"{name} holds no conversations.")
    return items


def _zip_items(data: bytes) -> list:
    """A zip: ChatGPT's data export (its conversations.json), or ours of all of one's data (every
    JSON file outside attachments/; the attached files are not imported)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if m.filename == "conversations.json"] or [
                m for m in archive.infolist()
                if m.filename.endswith(".json") and "/" not in m.filename and not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_BYTES:
                raise BadImport(f"That zip unpacks to more than {MAX_BYTES:,} bytes of conversations.")
            items = []
            for member in sorted(members, key=lambda m: m.filename):
                items += _items(archive.read(member), member.filename)
            return items
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise BadImport(f"That zip cannot be read ({exc}).") from exc


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


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"text expected, got {value!r:.40}")
    return value


def _count(value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"a token count expected, got {value!r:.40}")
    return value


def _ours(item: dict) -> Parsed:
    nodes, previous = {}, None
    for m in item["messages"]:
        key = str(m.get("id", len(nodes)))
        if key in nodes:
            raise ValueError(f"two messages with the id {key}")
        # Version 1 files written before messages had parents are a chain.
        parent = (None if m["parent"] is None else str(m["parent"])) if "parent" in m else previous
        status = m.get("status") or Message.Status.COMPLETE
        node = Node(key, parent, _text(m["role"]), _text(m["content"]), _text(m.get("model") or ""),
                    _text(m.get("reasoning") or ""),
                    # A reply exported while it was being written stops there.
                    status if status in STATUSES else Message.Status.INTERRUPTED,
                    _text(m.get("error") or ""), _text(m.get("finish_reason") or ""),
                    _count(m.get("prompt_tokens")), _count(m.get("completion_tokens")), _time(m.get("created_at")))
        nodes[key] = (parent, None, node)
        previous = key
    settings = item.get("settings")
    if settings is None:  # version 1
        settings = {"model": item.get("model"), "system_prompt": item.get("system_prompt") or ""}
    if not isinstance(settings, dict):
        raise TypeError("settings is not an object")
    current = item.get("current_leaf")
    messages, current = _tree(nodes, None if current is None else str(current))
    return Parsed(_text(item.get("title") or ""), messages, current, settings,
                  _time(item.get("created_at")), _time(item.get("updated_at")))


def _chatgpt(item: dict) -> Parsed:
    nodes = {}
    for key, entry in item["mapping"].items():
        message = entry.get("message") or {}
        role = (message.get("author") or {}).get("role")
        content = message.get("content") or {}
        text = "\n".join(p for p in content.get("parts") or () if isinstance(p, str)).strip()
        metadata = message.get("metadata") or {}
        kept = (role in CHAT_ROLES and text and content.get("content_type", "text") in ("text", "multimodal_text")
                and not metadata.get("is_visually_hidden_from_conversation")
                and message.get("recipient", "all") == "all")  # not a call to one of its tools
        node = Node(key, None, role, text, str(metadata.get("model_slug") or ""),
                    created_at=_time(message.get("create_time"))) if kept else None
        nodes[key] = (entry.get("parent"), entry.get("children"), node)
    messages, current = _tree(nodes, item.get("current_node"))
    return Parsed(_text(item.get("title") or ""), messages, current,
                  created_at=_time(item.get("create_time")), updated_at=_time(item.get("update_time")))


def _open_webui(item: dict) -> Parsed:
    chat = item["chat"]
    history = chat.get("history") or {}
    nodes, previous = {}, None
    if history.get("messages"):
        entries = [(str(key), None if m.get("parentId") is None else str(m["parentId"]), m.get("childrenIds"), m)
                   for key, m in history["messages"].items()]
    else:  # an old export: the shown branch as a list
        entries = []
        for number, m in enumerate(chat.get("messages") or []):
            entries.append((str(number), previous, None, m))
            previous = str(number)
    for key, parent, children, m in entries:
        content = m.get("content")
        kept = m.get("role") in CHAT_ROLES and isinstance(content, str) and content.strip()
        node = Node(key, None, m["role"], content, str(m.get("model") or ""), created_at=_time(m.get("timestamp"))) if kept else None
        nodes[key] = (parent, children, node)
    messages, current = _tree(nodes, history.get("currentId") or previous)
    models = chat.get("models") or []
    settings = {"model": str(models[0]) if models else None,
                "system_prompt": str((chat.get("params") or {}).get("system") or chat.get("system") or "")}
    return Parsed(_text(item.get("title") or chat.get("title") or ""), messages, current, settings,
                  _time(item.get("created_at")), _time(item.get("updated_at")))


def _tree(nodes: dict[str, tuple[str | None, list | None, Node | None]], current: str | None) -> tuple[list[Node], str | None]:
    """A file's message tree, as {key: (parent key, children keys in order or None, the message
    or None if it is left out)}, as our messages: parents first, siblings in the file's order
    (its children lists, else the order of the file), each message's parent the nearest kept
    one above it. With the message kept nearest above `current` (None: the last one kept)."""
    children: dict[str | None, list[str]] = {}
    for key, (parent, _, _) in nodes.items():
        if parent is not None and parent not in nodes:
            raise KeyError(f"message {key}'s parent {parent} is not in the file")
        children.setdefault(parent, []).append(key)
    for parent, keys in children.items():
        order = (nodes[parent][1] or []) if parent is not None else []
        if isinstance(order, list) and order:
            rank = {str(key): at for at, key in enumerate(order)}
            keys.sort(key=lambda k: rank.get(k, len(rank)))
    messages: list[Node] = []
    kept_at: dict[str, str | None] = {}  # each key -> the nearest kept message at or above it
    stack = [(key, None) for key in reversed(children.get(None, []))]
    while stack:
        key, above = stack.pop()
        node = nodes[key][2]
        if node is not None:
            node.parent = above
            messages.append(node)
            above = key
        kept_at[key] = above
        stack += [(child, above) for child in reversed(children.get(key, []))]
    if len(kept_at) < len(nodes):
        raise ValueError("the messages' parents go round in a loop")
    if current is None:
        return messages, messages[-1].key if messages else None
    if current not in nodes:
        raise KeyError(f"the message shown ({current}) is not in the file")
    return messages, kept_at[current]


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
    imported: list[Conversation] = field(default_factory=list)  # the first few, to open them

    SHOWN = 20

    @property
    def more(self) -> int:
        return self.conversations - len(self.imported)

    def __str__(self) -> str:
        c, m = self.conversations, self.messages
        return f"Imported {c} conversation{'s' * (c != 1)} ({m} message{'s' * (m != 1)})."


def save(user, parsed: list[Parsed]) -> Report:
    """All of it, or (on any error) none of it."""
    for number, p in enumerate(parsed, 1):
        bad = {m.role for m in p.messages} - ROLES
        if bad:
            raise BadImport(f"Conversation {number} has messages of an unknown role ({', '.join(sorted(bad))}): nothing was imported.")
    models = {m.name: m for m in Model.objects.usable_by(user)}
    count, imported = 0, []
    with transaction.atomic():
        for number, p in enumerate(parsed, 1):
            title = first_words(p.title) or (first_words(p.messages[0].content) if p.messages else "Imported chat")
            conversation = Conversation(owner=user, title=title, title_set_by_member=True)
            try:
                _settle(conversation, p.settings, models)
            except ValidationError as exc:
                raise BadImport(f"Conversation {number} in that file cannot be read ({'; '.join(exc.messages)}): nothing was imported.") from exc
            conversation.save()
            _plant(conversation, p)
            if len(imported) < Report.SHOWN:
                imported.append(conversation)
            count += len(p.messages)
            dates = {"created_at": p.created_at, "updated_at": p.updated_at}
            if dates := {name: moment for name, moment in dates.items() if moment}:  # it keeps its place in the list's days
                Conversation.objects.filter(pk=conversation.pk).update(**dates)
    return Report(len(parsed), count, imported)


def _settle(conversation: Conversation, settings: dict, models: dict[str, Model]) -> None:
    """The conversation's settings from the file: fields this site does not have are ignored; a
    model or preset by its name, none if there is no such one open to the member."""
    for name, value in settings.items():
        try:
            field = Conversation._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if name in NOT_SETTINGS or not field.concrete:
            continue
        if field.is_relation:
            if not isinstance(value, str):
                related = None
            elif field.related_model is Model:
                related = models.get(value)
            else:
                related = field.related_model.objects.filter(name=value).first()
            setattr(conversation, name, related)
        else:
            setattr(conversation, field.attname, field.clean(value, conversation))


def _plant(conversation: Conversation, p: Parsed) -> None:
    at = {node.key: number for number, node in enumerate(p.messages)}
    fields = {name for name in Node.__dataclass_fields__} - {"key", "parent", "created_at"}
    created = tree.plant(conversation, [Message(**{name: getattr(node, name) for name in fields}) for node in p.messages],
                         [None if node.parent is None else at[node.parent] for node in p.messages],
                         at.get(p.current))
    dated = []
    for message, node in zip(created, p.messages, strict=True):
        if node.created_at:
            message.created_at = node.created_at
            dated.append(message)
    Message.objects.bulk_update(dated, ["created_at"], batch_size=500)
