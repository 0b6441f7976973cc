"""The pages: the conversation list, one conversation, first-run set-up."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from django import forms
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import BaseUserCreationForm
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from conversations.attachments import store
from conversations.chat import tree
from conversations.chat.replies import announce_interrupted
from conversations.chatsettings import panel as chatsettings
from conversations.local import views as local_views
from conversations.models import Conversation, Model, Preferences

# A search result opens its conversation a few messages above the match, down to the latest.
AROUND_CONTEXT = 10
AROUND_LIMIT = 500


class AdminSetupForm(BaseUserCreationForm):
    email = forms.EmailField(required=False)

    class Meta(BaseUserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


@login_not_required
def setup(request):
    """First visit to a site with no users: create the admin account."""
    if get_user_model().objects.exists():
        return redirect("/")
    form = AdminSetupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save(commit=False)
        user.is_staff = user.is_superuser = True
        user.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("/")
    return render(request, "conversations/setup.html", {"form": form})


@require_GET
def index(request):
    return render(request, "conversations/index.html")


@require_POST
def new_chat(request):
    # An untouched new chat is reused rather than piling up empty ones (not one that is shared:
    # what is written in a new chat is nobody else's business).
    defaults = Preferences.new_chat_defaults(request.user)
    conversation = Conversation.objects.filter(owner=request.user, archived=False, messages=None, share=None).first()
    if conversation is None:
        conversation = Conversation.objects.create(owner=request.user, **defaults)
    else:  # starts afresh, with the member's defaults as they are now (and no chat settings)
        defaults |= {"template": None, "parameters": None, "variables": None}
        for field, value in defaults.items():
            setattr(conversation, field, value)
        conversation.save(update_fields=[*defaults, "updated_at"])
    return redirect(conversation)


@require_GET
def conversation(request, pk: int):
    """One's own conversation, or one shared with one (conversations.sharing): read-only, drawn
    without the message box."""
    conversation = get_object_or_404(Conversation.objects.readable_by(request.user)
                                     .select_related("model__provider", "template", "owner", "share"), pk=pk)
    reading = conversation.owner_id != request.user.pk
    if interrupted := conversation.messages.mark_stale_interrupted():
        async_to_sync(announce_interrupted)(interrupted)  # the tabs already open on it see it too
    before = int_param(request, "before")
    # A search result (?around=<id>) opens the branch that holds it, a few messages above it when
    # it is further back than the latest page (the template marks it by its #msg-<id> anchor).
    # A reader shows the owner's branch: they never move it.
    shown = tree.page(conversation, size=tree.PAGE_MESSAGES, before=before,
                      around=None if reading else int_param(request, "around"),
                      around_context=AROUND_CONTEXT, around_limit=AROUND_LIMIT)
    context = {"conversation": conversation, "messages": shown.messages, "has_earlier": shown.has_earlier}
    if request.htmx and before is not None:
        return render(request, "conversations/conversation.html#earlier", context)
    # The websocket asks for what changed after this render when it (re)connects.
    context["since"] = f"{time.time() - 1:.3f}"
    if reading:
        return render(request, "conversations/read_only.html", context)
    context |= {
        "models": local_views.with_status(Model.objects.usable_by(request.user).select_related("provider")),
        "notice": local_views.notice_for(conversation.model),
        "chat_settings": chatsettings.shown(conversation),
        "attached": store.waiting(request.user, conversation),  # files in the message box, not sent yet
    }
    return render(request, "conversations/conversation.html", context)


def int_param(request, name: str, maximum: int = 2**63 - 1) -> int | None:
    """A whole-number query parameter (an id, a page number): None when it is missing or not
    one (ignored, as an absent one is), and at most `maximum` (ids are 64-bit: a longer number
    means "after everything"), so that no hand-made URL reaches the database as an overflow."""
    value = request.GET.get(name, "")
    if not (value.isascii() and value.isdigit()):
        return None
    return maximum if len(value) > len(str(maximum)) else min(int(value), maximum)


@require_POST
def delete_conversation(request, pk: int):
    """Back to the page it was deleted from (`next`), unless that was the conversation itself."""
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    gone = conversation.get_absolute_url()
    conversation.delete()
    back = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts=None) and back.startswith("/") and back != gone
    return redirect(back if safe else "/")


