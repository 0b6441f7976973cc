"""/search/?q=: the search page, and the results under the sidebar's box (htmx)."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.observability import metrics
from conversations.search import search
from conversations.views import int_param


@require_GET
def search_page(request):
    text = request.GET.get("q", "")
    with metrics.SEARCH.time():
        page = search(request.user, text, int_param(request, "page") or 1)
    context = {"q": text, "page": page}
    if request.htmx:
        return render(request, "conversations/search.html#results", context)
    return render(request, "conversations/search.html", context)
