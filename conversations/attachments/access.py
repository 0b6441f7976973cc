"""Who may see an attachment: the one rule, asked by every door that shows or serves one."""

from __future__ import annotations

from django.db.models import Q

from conversations.models import Attachment, Conversation


def viewable(user):
    """The attachments `user` may see: those of their own conversations (sent, or still in their
    message box), and the sent ones of conversations shared with them (Conversation.objects.
    readable_by, the sharing rule). Nobody logged out sees any."""
    if not getattr(user, "is_authenticated", False):
        return Attachment.objects.none()
    readable = Conversation.objects.readable_by(user).values("pk")
    return Attachment.objects.filter(Q(conversation__owner=user) | Q(conversation__in=readable, message__isnull=False))
