"""The HTML frames sent over the websocket; htmx swaps each top-level element out of band.

Every frame is a partial of the page's own template (templates/conversations/conversation.html),
so a tab's live view and a reload show the same markup. Messages are sent whole and replace the
element with their id (or are appended when the tab does not have it yet, see static/js/chat.js);
fragments of a reply being written are appended to it; the thread (the branch shown) is sent
whole when the branch changes (an edit, a regenerated reply, another version).
"""

from __future__ import annotations

from django.template.loader import render_to_string

from conversations.models import Message

PAGE = "conversations/conversation.html"


def _part(name: str, **context) -> str:
    return render_to_string(f"{PAGE}#{name}", context)


def message(msg: Message, *, text: str | None = None, reasoning: str | None = None) -> str:
    """A whole message; `text`/`reasoning` override the stored ones for a reply in progress."""
    if text is not None:
        msg.content = text
    if reasoning is not None:
        msg.reasoning = reasoning
    return _part("message", message=msg, oob=True)


def fragment(message_id: int, text: str, reasoning: str = "") -> str:
    return _part("fragment", message_id=message_id, text=text, reasoning=reasoning)


def notice(text: str) -> str:
    """An explanation in place, under the message box."""
    return _part("notice", notice=text, oob=True)


def title(conversation) -> str:
    """The new title, in the page header and in the sidebar's list (the tabs that get it have this
    conversation open)."""
    context = {"c": conversation, "current_id": conversation.id, "oob": True}
    return (render_to_string("conversations/library.html#heading", context)
            + render_to_string("conversations/library.html#link", context))


def thread(conversation, messages: list[Message], has_earlier: bool) -> str:
    """The branch shown, in place of the tab's list of messages."""
    return _part("thread", conversation=conversation, messages=messages, has_earlier=has_earlier, thread_oob=True)
