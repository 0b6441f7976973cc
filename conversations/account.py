"""A member's own settings: their API keys, and their usage and remaining budget."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.db.models import Count, Q, Sum
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from conversations import audit
from conversations.admin.usage import daily
from conversations.models import ApiKey, Profile, UsageRecord


class NewKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What will use it, e.g. “laptop” or “CI”.")


def _month_start():
    return timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _remaining(budget, spent):
    return None if budget is None else max(budget - (spent or 0), 0)


def api_keys(request):
    profile = Profile.objects.filter(user=request.user).first()
    may_create = profile is None or profile.can_create_api_keys
    form = NewKeyForm(request.POST or None)
    new_secret = None
    if request.method == "POST":
        if not may_create:
            form.add_error(None, "An admin has turned off creating API keys for your account.")
        elif form.is_valid():
            api_key, new_secret = ApiKey.issue(request.user, name=form.cleaned_data["name"])
            audit.record(request.user, "create", api_key, via="settings")
            form = NewKeyForm()
    month = _month_start()
    keys = (ApiKey.objects.filter(owner=request.user).select_related("owner")
            .annotate(spent=Sum("usage__cost"), spent_month=Sum("usage__cost", filter=Q(usage__created_at__gte=month)))
            .order_by("-created_at"))
    mine = UsageRecord.objects.filter(user=request.user)
    this_month = mine.filter(created_at__gte=month).aggregate(
        requests=Count("id"), tokens=Sum("prompt_tokens") + Sum("completion_tokens"), cost=Sum("cost"))
    spent_total = mine.aggregate(cost=Sum("cost"))["cost"] or 0
    context = {
        "keys": keys, "form": form, "may_create": may_create, "new_secret": new_secret, "profile": profile,
        "this_month": this_month, "spent_total": spent_total,
        "remaining_monthly": _remaining(profile and profile.budget_monthly, this_month["cost"]),
        "remaining_total": _remaining(profile and profile.budget_total, spent_total),
        "days": daily(mine.filter(created_at__gte=timezone.now() - timedelta(days=30))),
    }
    response = render(request, "conversations/api_keys.html", context)
    if new_secret:
        response["Cache-Control"] = "no-store"  # the page holding the key is not kept by the browser
    return response


@require_POST
def revoke_api_key(request, pk: int):
    api_key = get_object_or_404(ApiKey, pk=pk, owner=request.user)
    if api_key.revoked_at is None:
        api_key.revoke()
        audit.record(request.user, "revoke", api_key, via="settings")
    return redirect("api_keys")
