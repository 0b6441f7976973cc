"""The conversation list, a page at a time: pinned first, then newest first, under the headings
Today / Yesterday / Previous 7 days / Previous 30 days / Older.

A page is one query (keyset paging on the list's order, served by the conversation_owner_list
index), whatever the number of conversations. The cursor carries the last heading shown, so the
next page starts a heading only where the group changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlencode

from django.db.models import Q
from django.utils import timezone

from conversations.models import Conversation

PAGE_SIZE = 50
PINNED = "Pinned"


def group_of(conversation: Conversation, today: date) -> str:
    """The heading a conversation goes under, by its last activity in the site's time zone."""
    if conversation.pinned:
        return PINNED
    age = (today - timezone.localdate(conversation.updated_at)).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    if age <= 7:
        return "Previous 7 days"
    if age <= 30:
        return "Previous 30 days"
    return "Older"


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended (its last row's sort key) and the heading it was under."""

    pinned: bool
    updated_at: datetime
    id: int
    group: str

    @classmethod
    def from_query(cls, params) -> Cursor | None:
        """None for the first page; ValueError for a cursor that is not one of ours."""
        if "id" not in params:
            return None
        updated_at = datetime.fromisoformat(params["updated"])
        if updated_at.tzinfo is None:
            raise ValueError("a cursor's time has its zone")
        return cls(params.get("pinned") == "1", updated_at, int(params["id"]), params.get("group", ""))

    def query(self) -> dict:
        return {"pinned": int(self.pinned), "updated": self.updated_at.isoformat(), "id": self.id, "group": self.group}

    def rows_after(self) -> Q:
        later = Q(updated_at__lt=self.updated_at) | Q(updated_at=self.updated_at, id__lt=self.id)
        if self.pinned:
            return Q(pinned=True) & later | Q(pinned=False)
        return Q(pinned=False) & later


@dataclass
class Entry:
    conversation: Conversation
    heading: str  # "" when it continues the group above


@dataclass
class Page:
    entries: list[Entry]
    archived: bool
    next: Cursor | None

    def next_query(self, current_id: int | None = None) -> str:
        """The next page's query string; `current_id` marks the open conversation in it."""
        if self.next is None:
            return ""
        params = self.next.query() | ({"archived": 1} if self.archived else {})
        return urlencode(params | ({"current": current_id} if current_id else {}))


def page(user, *, archived: bool = False, after: Cursor | None = None, now: datetime | None = None,
         size: int = PAGE_SIZE) -> Page:
    rows = (Conversation.objects.filter(owner=user, archived=archived)
            .order_by("-pinned", "-updated_at", "-id")
            .only("id", "title", "updated_at", "pinned", "archived"))
    if after is not None:
        rows = rows.filter(after.rows_after())
    found = list(rows[: size + 1])
    today = timezone.localdate(now or timezone.now())
    entries, previous = [], after.group if after else ""
    for conversation in found[:size]:
        group = group_of(conversation, today)
        entries.append(Entry(conversation, group if group != previous else ""))
        previous = group
    last = found[size - 1] if len(found) > size else None
    following = Cursor(last.pinned, last.updated_at, last.id, previous) if last else None
    return Page(entries, archived, following)
