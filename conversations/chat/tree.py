"""The message tree: each message has a parent; an edit or a regenerated reply is a sibling of
the message it replaces. What a member sees, and what goes upstream, is the active path: from
the conversation's current leaf up to the first message.

The tree's shape (ids and parents only) is read in one query, so that a page of a long
conversation costs the same few queries whatever its size or number of branches.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from conversations.attachments import store
from conversations.models import Conversation, Message, UsageRecord

PAGE_MESSAGES = 50  # a long conversation opens on its latest messages; earlier ones load on scroll


@dataclass(frozen=True)
class Version:
    """A message's place among its siblings, for the Previous/Next version buttons."""

    position: int  # 1-based
    count: int
    previous: int | None  # the sibling's id
    next: int | None


class Tree:
    def __init__(self, rows: list[tuple[int, int | None]]):
        self.parents: dict[int, int | None] = {}
        self.children: dict[int | None, list[int]] = defaultdict(list)
        for pk, parent in sorted(rows):
            self.parents[pk] = parent
            self.children[parent].append(pk)

    @classmethod
    def of(cls, conversation_id: int) -> Tree:
        return cls(list(Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id")))

    @classmethod
    async def aof(cls, conversation_id: int) -> Tree:
        return cls([row async for row in Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id")])

    def tip(self, message_id: int | None = None) -> int | None:
        """The end of the branch through `message_id` (newest child at each fork); without one,
        of the newest message."""
        if message_id is None or message_id not in self.parents:
            message_id = max(self.parents, default=None)
        while message_id is not None and self.children.get(message_id):
            message_id = self.children[message_id][-1]
        return message_id

    def path(self, leaf_id: int | None) -> list[int]:
        """The ids from the first message down to the tip of the branch through `leaf_id`."""
        return self.path_to(self.tip(leaf_id))

    def path_to(self, message_id: int | None) -> list[int]:
        """The ids from the first message down to `message_id`."""
        ids = []
        while message_id is not None:
            ids.append(message_id)
            message_id = self.parents[message_id]
        return ids[::-1]

    def version(self, message_id: int) -> Version:
        siblings = self.children[self.parents[message_id]]
        at = siblings.index(message_id)
        return Version(at + 1, len(siblings), siblings[at - 1] if at else None,
                       siblings[at + 1] if at + 1 < len(siblings) else None)

    def with_versions(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            if message.id in self.parents:
                message.version = self.version(message.id)
        return messages


def add(conversation: Conversation, parent_id: int | None, **fields) -> Message:
    """A message placed under `parent_id` (None: a first message), as the new tip shown."""
    message = Message(conversation=conversation, parent_id=parent_id, **fields)
    message.placed = True
    message.save()
    return message


aadd = sync_to_async(add)


def chain(conversation: Conversation, messages: list[Message], parent_id: int | None = None) -> list[Message]:
    """Insert `messages` (unsaved) in bulk as one chain under `parent_id`, and show the branch
    they end (bulk_create does not call save(), which places a message one at a time)."""
    return plant(conversation, messages, [i - 1 if i else None for i in range(len(messages))], under=parent_id)


def plant(conversation: Conversation, messages: list[Message], parents: list[int | None], leaf: int | None = None,
          *, under: int | None = None) -> list[Message]:
    """Insert `messages` (unsaved) in bulk as a tree: `parents[i]` is the position in `messages`
    of message i's parent (an earlier one), None for a first message (placed under `under`).
    The branch shown is the one through `leaf` (a position; default the last message), down to
    its tip. Siblings keep their order (the versions' "1 / 2") from their order in `messages`."""
    for message in messages:
        message.conversation = conversation
    created = Message.objects.bulk_create(messages)
    for message, parent in zip(created, parents, strict=True):
        message.parent_id = under if parent is None else created[parent].pk
    Message.objects.bulk_update(created, ["parent"], batch_size=500)
    if created:
        shape = Tree([(m.pk, m.parent_id) for m in created])
        tip = shape.tip(created[-1 if leaf is None else leaf].pk)
    else:
        tip = under
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=tip)
    conversation.current_leaf_id = tip
    return created


@dataclass
class Page:
    messages: list[Message]
    has_earlier: bool


def page(conversation: Conversation, *, size: int, before: int | None = None, around: int | None = None,
         around_context: int = 10, around_limit: int = 500) -> Page:
    """A page of the active path, rendered-ready (versions, usage and attachments attached): the latest `size`
    messages, or those before `before` (scrolling up), or from `around_context` messages above
    `around` (a search result: its branch becomes the one shown)."""
    tree = Tree.of(conversation.id)
    if around is not None and before is None and around in tree.parents and around not in tree.path(conversation.current_leaf_id):
        conversation.current_leaf_id = tree.tip(around)
        conversation.save(update_fields=["current_leaf"])
    path = tree.path(conversation.current_leaf_id)
    if around is not None and before is None and around in path and path.index(around) < len(path) - size:
        start = max(path.index(around) - around_context, 0)
        ids, has_earlier = path[start : start + around_limit], start > 0
    else:
        end = path.index(before) if before in path else (len([pk for pk in path if pk < before]) if before is not None else len(path))
        ids, has_earlier = path[max(end - size, 0) : end], end > size
    rows = {m.id: m for m in Message.objects.filter(pk__in=ids)}
    messages = tree.with_versions([rows[pk] for pk in ids if pk in rows])
    attach_usage(messages)
    store.list_for(messages)
    return Page(messages, has_earlier)


apage = sync_to_async(page)


def attach_usage(messages: list[Message]) -> None:
    """Each reply's usage record (the last attempt of its request), in one query."""
    wanted = {m.request_id for m in messages if m.request_id and m.is_final}
    if not wanted:
        return
    records = {r.request_id: r for r in UsageRecord.objects.filter(request_id__in=wanted).order_by("created_at", "id")}
    for message in messages:
        if record := records.get(message.request_id):
            message.usage_record = record
