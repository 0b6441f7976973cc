"""A conversation shared read-only inside the team (conversations.sharing)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class Share(models.Model):
    """Who a conversation is shared with, read-only: everyone in the team, some members by name,
    some groups. No row: not shared. Who may read is decided in one place only,
    `Conversation.objects.readable_by` (conversations/models/chat.py)."""

    conversation = models.OneToOneField(
        "conversations.Conversation", on_delete=models.CASCADE, primary_key=True, related_name="share"
    )
    everyone = models.BooleanField(default=False)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="conversation_shares")
    groups = models.ManyToManyField(Group, blank=True, related_name="conversation_shares")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # readable_by: the conversations shared with everyone (the M2M tables are indexed by
            # Django on both sides for the by-name and by-group cases).
            models.Index(fields=["conversation"], condition=models.Q(everyone=True), name="share_everyone"),
        ]

    def __str__(self) -> str:
        return f"sharing of conversation {self.conversation_id}"
