"""The HTML frames sent over the websocket; htmx swaps each top-level element out of band.

Messages are sent whole and replace the element with their id (or are appended when the tab does
not have it yet, see static/js/chat.js); fragments of a reply being written are appended to it.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.html import escape

from conversations.models import Message


def message(msg: Message, *, text: str | None = None, reasoning: str | None = None) -> str:
    """A whole message; `text`/`reasoning` override the stored ones for a reply in progress."""
    if text is not None:
        msg.content = text
    if reasoning is not None:
        msg.reasoning = reasoning
    return render_to_string("conversations/conversation.html#message", {"message": msg, "oob": True})


def fragment(message_id: int, text: str, reasoning: str = "") -> str:
    # No whitespace inside the wrappers: everything in them is inserted.
    parts = []
    if reasoning:
        parts.append(f'<span hx-swap-oob="beforeend:#msg-{message_id}-reasoning">{escape(reasoning)}</span>')
    if text:
        parts.append(f'<span hx-swap-oob="beforeend:#msg-{message_id}-text">{escape(text)}</span>')
    return "".join(parts)


def notice(text: str) -> str:
    """An explanation in place, under the message box."""
    return f'<div id="composer-notice" hx-swap-oob="true" role="alert">{escape(text)}</div>'


def title(conversation) -> str:
    """The new title, in the page header and in the sidebar's list (the tabs that get it have this
    conversation open)."""
    context = {"c": conversation, "current_id": conversation.id, "oob": True}
    return (render_to_string("conversations/library.html#heading", context)
            + render_to_string("conversations/library.html#link", context))
