"""The Share form: everyone in the team, members by name, groups."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from conversations.models import Share


def member_name(user) -> str:
    full = user.get_full_name()
    return f"{full} ({user.get_username()})" if full else user.get_username()


class MemberChoice(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        return member_name(obj)


class ShareForm(forms.Form):
    everyone = forms.BooleanField(required=False, label="Everyone in the team")
    users = MemberChoice(queryset=get_user_model().objects.none(), required=False,
                         widget=forms.CheckboxSelectMultiple, label="Members")
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.order_by("name"), required=False,
                                            widget=forms.CheckboxSelectMultiple, label="Groups")

    def __init__(self, *args, owner, share: Share | None = None, **kwargs):
        if share is not None and not args:
            kwargs["initial"] = {"everyone": share.everyone, "users": list(share.users.all()),
                                 "groups": list(share.groups.all())}
        super().__init__(*args, **kwargs)
        # The other active members (a deactivated one cannot read anyway).
        self.fields["users"].queryset = (get_user_model().objects.filter(is_active=True).exclude(pk=owner.pk)
                                         .order_by("username"))


def shared_with(share: Share | None) -> list[str]:
    """Who it is shared with, in words, for the panel."""
    if share is None:
        return []
    if share.everyone:
        return ["everyone in the team"]
    return [member_name(u) for u in share.users.order_by("username")] + [
        f"the group {g.name}" for g in share.groups.order_by("name")]
