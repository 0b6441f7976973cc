"""The local model's state in the model picker: its label ("SmolLM2 135M (local) — preparing,
3 min"), refreshed while it is not ready, and the explanation shown under the message box when a
member picks it. The label comes from conversations/conversation.html#model-label, the
explanation from state.Status, the same text the chat and /v1 give when it is used too early.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from conversations.chat import frames
from conversations.local.provision import status_of
from conversations.models import Model

# htmx stops polling on this status: the label is final once the model is ready.
STOP_POLLING = 286


def with_status(models) -> list[Model]:
    """The picker's models, the embedded one carrying its state as `local_status`."""
    models = list(models)
    for model in models:
        model.local_status = status_of(model)
    return models


def notice_for(model: Model | None) -> str:
    """What to say under the message box about this model ("" when it can be used)."""
    found = status_of(model) if model is not None else None
    return found.explanation if found is not None and not found.ready else ""


@require_GET
def label(request, pk: int):
    """The picker's label of the local model, polled while it is being prepared."""
    model = get_object_or_404(Model.objects.usable_by(request.user).select_related("provider"), pk=pk)
    model.local_status = status_of(model)
    response = render(request, "conversations/conversation.html#model-label", {"m": model})
    if model.local_status is None or model.local_status.ready:
        response.status_code = STOP_POLLING
    return response


@require_GET
def notice(request):
    """The explanation under the message box for the model just picked (empty for most)."""
    model = Model.objects.usable_by(request.user).select_related("provider").filter(name=request.GET.get("model", "")).first()
    return HttpResponse(frames.notice(notice_for(model)))
