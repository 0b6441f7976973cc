"""The organising requests: the list's next pages, /archived/, rename, pin, archive.

Each answers htmx with the pieces that changed (templates/conversations/library.html), and a
browser without JavaScript with a redirect. A member only ever reaches their own conversations:
anyone else's is a 404.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations.chat import frames, hub
from conversations.ids import parse_id
from conversations.library import listing
from conversations.library.organise import OrganiseError, rename, set_archived, set_pinned
from conversations.models import Conversation

TEMPLATE = "conversations/library.html"
ACTIONS = {
    "pin": lambda c: set_pinned(c, True),
    "unpin": lambda c: set_pinned(c, False),
    "archive": lambda c: set_archived(c, True),
    "unarchive": lambda c: set_archived(c, False),
}


def _own(request, pk: int) -> Conversation:
    return get_object_or_404(Conversation, pk=pk, owner=request.user)


def _current_id(request) -> int | None:
    """The conversation open in the page that asked (htmx says which page that is)."""
    path = (request.htmx.current_url_abs_path or "") if request.htmx else ""
    parts = path.split("?")[0].strip("/").split("/")
    return parse_id(parts[1]) if len(parts) == 2 and parts[0] == "c" else None


@require_GET
def conversation_list(request):
    """The next page of the sidebar's list, or of /archived/'s (`archived=1`)."""
    try:
        after = listing.Cursor.from_query(request.GET)
        current = int(request.GET["current"]) if request.GET.get("current") else None
    except (KeyError, ValueError):
        return HttpResponseBadRequest("That is not a page of the conversation list.")
    archived = request.GET.get("archived") == "1"
    page = listing.page(request.user, archived=archived, after=after)
    return render(request, f"{TEMPLATE}#page",
                  {"page": page, "current_id": current, "prefix": "archived" if archived else "conversation"})


@require_GET
def archived(request):
    return render(request, "conversations/archived.html", {"archived_page": listing.page(request.user, archived=True)})


@require_http_methods(["GET", "POST"])
def rename_conversation(request, pk: int):
    """GET: the title as a box to edit in place (`in`: header or sidebar), or back as it was
    (`cancel`). POST: the new title, swapped in there and in the other place."""
    conversation = _own(request, pk)
    where = request.GET.get("in") or request.POST.get("in") or "header"
    context = {"c": conversation, "current_id": _current_id(request), "prefix": "conversation"}
    if request.method == "GET":
        context["renaming"] = "cancel" not in request.GET
        return _in_place(request, where, context)
    try:
        rename(conversation, request.POST.get("title", ""))
    except OrganiseError as exc:
        context |= {"renaming": True, "rename_error": str(exc), "title_typed": request.POST.get("title", "")}
        return _in_place(request, where, context)
    async_to_sync(hub.publish)(conversation.id, frames.title(conversation))  # the other tabs open on it
    if not request.htmx:
        return redirect(conversation)
    response = _in_place(request, where, context)
    other = "item" if where == "header" else "header"
    if other == "item" or context["current_id"] == conversation.id:
        response.content += render(request, f"{TEMPLATE}#{other}", context | {"oob": True}).content
    return response


def _in_place(request, where: str, context: dict):
    return render(request, f"{TEMPLATE}#{'header' if where == 'header' else 'item'}", context)


@require_POST
def organise_conversation(request, pk: int):
    """Pin, Unpin, Archive, Unarchive: the header and the sidebar's list as they now are."""
    conversation = _own(request, pk)
    action = ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        return HttpResponseBadRequest("Unknown action: pin, unpin, archive or unarchive.")
    action(conversation)
    if not request.htmx:
        return redirect("archived" if conversation.archived else conversation)
    current = _current_id(request)
    return render(request, f"{TEMPLATE}#changed", {
        "c": conversation, "current_id": current, "show_header": current == conversation.id,
        "sidebar_page": listing.page(request.user), "unarchived": request.POST["action"] == "unarchive",
    })
