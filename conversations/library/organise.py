"""What a member does to one of their conversations: rename, pin, archive.

None of these is activity: `updated_at` is left alone (save with update_fields leaves an
auto_now field out), so a conversation keeps its place in the list's time groups.
"""

from __future__ import annotations

from conversations.models import Conversation

MAX_TITLE_CHARS = 200  # the column's length


class OrganiseError(Exception):
    """A request that cannot be done; the message is shown in place."""


def clean_title(text: str) -> str:
    title = " ".join((text or "").split())
    if not title:
        raise OrganiseError("A title cannot be empty.")
    if len(title) > MAX_TITLE_CHARS:
        raise OrganiseError(f"A title is at most {MAX_TITLE_CHARS} characters (this one has {len(title)}).")
    return title


def rename(conversation: Conversation, text: str) -> None:
    """The member's own title: from now on the automatic title leaves it alone."""
    conversation.title = clean_title(text)
    conversation.title_set_by_member = True
    conversation.save(update_fields=["title", "title_set_by_member"])


def set_pinned(conversation: Conversation, pinned: bool) -> None:
    conversation.pinned = pinned
    conversation.save(update_fields=["pinned"])


def set_archived(conversation: Conversation, archived: bool) -> None:
    """Archived: out of the list (and unpinned: a pin is a place in the list), on /archived/."""
    conversation.archived = archived
    conversation.pinned = False
    conversation.save(update_fields=["archived", "pinned"])
