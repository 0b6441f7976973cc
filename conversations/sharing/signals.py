"""Whatever takes a conversation away from a reader, however it is done (Stop sharing, the
conversation deleted, a member taken out of a group, in a page, the admin or the shell): the
sockets concerned ask the rule again and close if they may no longer read. (Editing a share
does it in conversations.sharing.actions.share.)"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_delete
from django.dispatch import receiver

from conversations.models import Share
from conversations.sharing import access

User = get_user_model()


@receiver(post_delete, sender=Share, dispatch_uid="chatsite-sharing-stopped")
def sharing_stopped(sender, instance, **kwargs):
    access.recheck_conversation(instance.conversation_id)


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="chatsite-sharing-group-left")
def group_left(sender, instance, action, reverse, pk_set=None, **kwargs):
    """A member out of a group (from the member's side, or the group's) loses what was shared
    with the group."""
    if action not in ("post_remove", "pre_clear"):
        return
    from conversations.consumers import user_group  # the websocket's module: loaded with the chat

    if not reverse:  # instance is the member
        members = [instance.pk]
    elif action == "pre_clear":  # instance is the group, emptied
        members = list(instance.user_set.values_list("pk", flat=True))
    else:
        members = list(pk_set or ())
    for member in members:
        access.recheck(user_group(member))
