"""The Chat settings panel's requests: the owner's alone (anyone else gets a 404).

POST saves the form and answers with the form again, saying "Saved" or each error in place with
what was typed; GET answers the pieces that change while it is filled in: the fields of another
preset (`part=slots`), Reasoning effort for another model (`part=reasoning`).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from conversations.chatsettings import panel
from conversations.models import Conversation

TEMPLATE = "conversations/chat_settings.html"


@require_http_methods(["GET", "POST"])
def chat_settings(request, pk: int):
    conversation = get_object_or_404(Conversation.objects.select_related("model", "template"), pk=pk, owner=request.user)
    if request.method == "POST":
        shown = panel.save(conversation, request.POST)
        if shown.saved and not request.htmx:
            return redirect(conversation)
        return render(request, f"{TEMPLATE}#form", {"panel": shown}, status=200 if shown.saved or request.htmx else 400)
    part = request.GET.get("part")
    if part == "slots":
        return render(request, f"{TEMPLATE}#slots", {"panel": panel.choosing(conversation, request.GET.get("preset", ""))})
    if part == "reasoning":
        shown = panel.with_model(conversation, request.user, request.GET.get("model", ""), request.GET.get("reasoning_effort"))
        return render(request, f"{TEMPLATE}#reasoning", {"panel": shown})
    return render(request, f"{TEMPLATE}#form", {"panel": panel.shown(conversation)})
