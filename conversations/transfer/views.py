"""Export one conversation (Markdown, JSON) or all of one's data (a zip); import conversations
from a file. The import form and Export all data are on /settings/ (its "Your data" section)."""

from __future__ import annotations

import json

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from conversations import settings_page
from conversations.models import Conversation
from conversations.transfer import archive, export, imports

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


@require_GET
def export_all(request):
    name = f"chatsite-{slugify(request.user.get_username()) or 'data'}-{timezone.localdate():%Y-%m-%d}.zip"
    return FileResponse(archive.build(request.user), as_attachment=True, filename=name, content_type="application/zip")


@require_http_methods(["GET", "POST"])
def import_conversations(request):
    """POST: import the file and show /settings/ with what was imported, or why nothing was.
    GET: the form is on /settings/."""
    if request.method == "GET":
        return redirect(reverse("settings") + "#your-data")
    context = {}
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise imports.BadImport("Choose a file to import.")
        if upload.size > imports.MAX_BYTES:
            raise imports.BadImport(f"That file is too large ({upload.size:,} bytes; the limit is {imports.MAX_BYTES:,}).")
        context["import_report"] = imports.save(request.user, imports.read(upload.read()))
    except imports.BadImport as exc:
        context["import_error"] = str(exc)
    return settings_page.render_page(request, status=422 if "import_error" in context else 200, **context)
