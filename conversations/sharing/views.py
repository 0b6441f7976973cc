"""Share (the owner's panel in the chat's header), Continue in my chats, and Shared with me.

The reader's view of a shared conversation is its usual page (conversations/views.py), drawn
read-only (templates/conversations/read_only.html).
"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations.models import Conversation, Share
from conversations.sharing import actions
from conversations.sharing.forms import ShareForm, shared_with
from conversations.views import int_param

TEMPLATE = "conversations/sharing.html"
SHARED_PAGE_SIZE = 50


@require_http_methods(["GET", "POST"])
def share_conversation(request, pk: int):
    """GET: the Share panel (`close`: the panel closed). POST: shared with those chosen, or no
    longer shared (`stop`, or nobody chosen); the panel says how it is now."""
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    if request.method == "GET" and "close" in request.GET:
        return HttpResponse("")
    current = Share.objects.filter(conversation=conversation).first()
    form, saved = ShareForm(owner=request.user, share=current), False
    if request.method == "POST":
        if "stop" in request.POST:
            actions.stop_sharing(conversation)
            current, saved = None, True
            form = ShareForm(owner=request.user)
        else:
            form = ShareForm(request.POST, owner=request.user)
            if form.is_valid():
                current, saved = actions.share(conversation, **form.cleaned_data), True
        if saved and not request.htmx:
            return redirect(conversation)
    return render(request, f"{TEMPLATE}#panel", {
        "c": conversation, "form": form, "shared": current is not None, "shared_with": shared_with(current),
        "saved": saved, "oob_state": saved,
    })  # a refusal is a 200 too: htmx swaps only those, and the error is shown in place


@require_POST
def continue_conversation(request, pk: int):
    """A copy of the branch shown, in the member's own chats, opened there."""
    conversation = get_object_or_404(Conversation.objects.readable_by(request.user), pk=pk)
    return redirect(actions.continue_in_my_chats(request.user, conversation))


@require_GET
def shared_with_me(request):
    """What others shared with the member, newest first, a page at a time (one query a page)."""
    number = int_param(request, "page", maximum=10**6) or 1
    start = (number - 1) * SHARED_PAGE_SIZE
    rows = list(Conversation.objects.shared_with(request.user).select_related("owner")
                .order_by("-updated_at", "-id")
                .only("id", "title", "updated_at", "owner__username", "owner__first_name", "owner__last_name")
                [start : start + SHARED_PAGE_SIZE + 1])
    return render(request, "conversations/shared.html", {
        "shared": rows[:SHARED_PAGE_SIZE], "page_number": number,
        "next_page": number + 1 if len(rows) > SHARED_PAGE_SIZE else None,
    })
