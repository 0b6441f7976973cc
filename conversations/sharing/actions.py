"""What the owner does to share a conversation, and what a reader does with it."""

from __future__ import annotations

from django.db import transaction

from conversations.chat import tree
from conversations.models import Conversation, Message, Model, Preferences, Share
from conversations.sharing import access

# What a copy keeps of each message: the text and how it was written, not the owner's usage.
COPIED_FIELDS = ("role", "content", "reasoning", "status", "error", "finish_reason", "model",
                 "prompt_tokens", "completion_tokens")


@transaction.atomic
def share(conversation: Conversation, *, everyone: bool, users, groups) -> Share | None:
    """Shared with exactly these from now on (nobody: not shared). Readers taken off the list
    lose it at once, open sockets included."""
    users, groups = list(users), list(groups)
    if not (everyone or users or groups):
        stop_sharing(conversation)
        return None
    shared, _ = Share.objects.update_or_create(conversation=conversation, defaults={"everyone": everyone})
    shared.users.set(users)
    shared.groups.set(groups)
    access.recheck_conversation(conversation.pk)
    return shared


def stop_sharing(conversation: Conversation) -> None:
    """Nobody but the owner reads it any more, from the next request on (its readers' open
    sockets are closed: conversations/sharing/signals.py, also when the conversation is deleted)."""
    Share.objects.filter(conversation=conversation).delete()


@transaction.atomic
def continue_in_my_chats(user, conversation: Conversation) -> Conversation:
    """A conversation of `user`'s own holding the branch shown of one they may read (its finished
    messages: a reply still being written stops the copy there), to write on from there."""
    ids = tree.Tree.of(conversation.pk).path(conversation.current_leaf_id)
    rows = {m.pk: m for m in Message.objects.filter(pk__in=ids)}
    copied = []
    for pk in ids:
        message = rows[pk]
        if not message.is_final:
            break
        copied.append(Message(**{field: getattr(message, field) for field in COPIED_FIELDS}))
    usable = Model.objects.usable_by(user)
    model = usable.filter(pk=conversation.model_id).first() if conversation.model_id else None
    copy = Conversation.objects.create(
        owner=user, title=conversation.title, title_set_by_member=True,
        model=model or Preferences.new_chat_defaults(user)["model"],
        system_prompt=conversation.system_prompt, template=conversation.template,
    )
    tree.chain(copy, copied)
    return copy
