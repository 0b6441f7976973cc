"""Who may see an attachment: the one rule, asked by every door that shows or serves one."""

from __future__ import annotations

from conversations.models import Attachment


def viewable(user):
    """The attachments `user` may see: those of their own conversations (sent, or still in the
    message box). Nobody logged out sees any."""
    if not getattr(user, "is_authenticated", False):
        return Attachment.objects.none()
    return Attachment.objects.filter(conversation__owner=user)
