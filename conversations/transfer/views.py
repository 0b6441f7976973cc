"""Export one conversation (Markdown, JSON); import conversations from a file (/import/)."""

from __future__ import annotations

import json

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from conversations.models import Conversation
from conversations.transfer import export, imports

FORMATS = {"md": ("text/markdown; charset=utf-8", export.as_markdown),
           "json": ("application/json", lambda c: json.dumps(export.as_json(c), ensure_ascii=False, indent=2))}


@require_GET
def export_conversation(request, pk: int, fmt: str):
    if fmt not in FORMATS:
        raise Http404("Export as md or json.")
    # Its owner, and those it is shared with (conversations.sharing).
    conversation = get_object_or_404(Conversation.objects.readable_by(request.user).select_related("model"), pk=pk)
    content_type, write = FORMATS[fmt]
    response = HttpResponse(write(conversation), content_type=content_type)
    name = slugify(conversation.title)[:60] or f"conversation-{conversation.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@require_http_methods(["GET", "POST"])
def import_conversations(request):
    context = {}
    if request.method == "POST":
        upload = request.FILES.get("file")
        try:
            if upload is None:
                raise imports.BadImport("Choose a file to import.")
            if upload.size > imports.MAX_BYTES:
                raise imports.BadImport(f"That file is too large ({upload.size:,} bytes; the limit is {imports.MAX_BYTES:,}).")
            context["report"] = imports.save(request.user, imports.read(upload.read()))
        except imports.BadImport as exc:
            context["error"] = str(exc)
    return render(request, "conversations/import.html", context, status=422 if "error" in context else 200)
