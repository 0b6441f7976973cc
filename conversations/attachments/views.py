"""Attaching files (the message box's upload) and serving them, only through `access`: an
attachment has no public URL, and anyone it is not for gets a 404 (logged out: the login page)."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from conversations.attachments import access, store
from conversations.models import Attachment, Conversation


@require_POST
def upload(request, pk: int):
    """The files picked, pasted or dropped: chips for the message box, and what was refused."""
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    added, errors = store.add(request.user, conversation, request.FILES.getlist("files"),
                              request.POST.getlist("attachments"))
    return render(request, "conversations/attachments.html#uploaded", {"added": added, "errors": errors})


@require_POST
def remove(request, pk: int):
    """Remove: the file taken off the message being written (a sent one stays)."""
    if not store.remove(request.user, pk):
        raise Http404("No such attachment in your message box.")
    return HttpResponse("")


@require_GET
def attachment(request, pk: int):
    """The file: an image shown in the browser, anything else downloaded."""
    found = get_object_or_404(access.viewable(request.user).defer("text"), pk=pk)
    inline = found.kind == Attachment.Kind.IMAGE
    content_type = found.content_type + ("; charset=utf-8" if found.content_type.startswith("text/") else "")
    return _file(found.file, content_type, content_disposition_header(not inline, found.name))


@require_GET
def thumbnail(request, pk: int):
    found = get_object_or_404(access.viewable(request.user).defer("text"), pk=pk)
    if not found.thumbnail:
        raise Http404("This attachment has no thumbnail.")
    return _file(found.thumbnail, "image/webp", "inline")


def _file(name: str, content_type: str, disposition: str) -> HttpResponse:
    try:
        data = store.read(name)
    except FileNotFoundError:
        raise Http404("This attachment's file is gone.") from None
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"  # the type said, never one guessed from the bytes
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"  # opened alone: runs nothing
    response["Cache-Control"] = "private"
    return response
