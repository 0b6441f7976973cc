"""Conversations and their messages: what the browser chat stores."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone


class ConversationQuerySet(models.QuerySet):
    def readable_by(self, user):
        """The conversations `user` may read: THE rule, for every door (the page and its
        fragments, exports, attachments, the websocket). Their own, and those shared with them
        (conversations.sharing): with everyone in the team, with them by name, or with a group of
        theirs. Nobody logged out or deactivated reads anything. Reading is all a share gives:
        everything else (writing, renaming, sharing, deleting...) stays with the owner."""
        if not (user is not None and user.is_authenticated and user.is_active):
            return self.none()
        from conversations.models.sharing import Share

        shared = Share.objects.filter(
            models.Q(everyone=True) | models.Q(users=user) | models.Q(groups__user=user)
        ).values("conversation_id")
        return self.filter(models.Q(owner=user) | models.Q(pk__in=shared))

    def shared_with(self, user):
        """Those shared with `user` by someone else (Shared with me)."""
        return self.readable_by(user).exclude(owner=user)


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default="New chat")
    model = models.ForeignKey(
        "conversations.Model", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    system_prompt = models.TextField(blank=True, default="")
    # A preset: the template's messages go before the conversation (its slots take their defaults).
    template = models.ForeignKey(
        "conversations.PromptTemplate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The Chat settings panel's (conversations.chatsettings), sent with every reply: `parameters`
    # holds temperature, top_p, max_tokens and reasoning_effort as the gateway's validation
    # accepted them, `variables` the values of the preset's {{slots}}. Null until first saved
    # (nullable: a plain ADD COLUMN, which the search triggers on this table survive).
    parameters = models.JSONField(null=True, blank=True)
    variables = models.JSONField(null=True, blank=True)
    # The tip of the branch shown (conversations.chat.tree): the newest message, or the one a
    # member went to with Previous/Next version or from a search result.
    current_leaf = models.ForeignKey(
        "conversations.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    # Renamed by the member: the automatic title never replaces it.
    title_set_by_member = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            # The conversation list: one owner's, newest first.
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
            # The sidebar's pages and /archived/ (conversations.library.listing): one owner's,
            # archived or not, pinned first, then newest first.
            models.Index(fields=["owner", "archived", "-pinned", "-updated_at", "-id"], name="conversation_owner_list"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return f"/c/{self.pk}/"


INTERRUPTED_ERROR = "The server stopped while this reply was being written."


class MessageQuerySet(models.QuerySet):
    def mark_stale_interrupted(self) -> list[int]:
        """Streaming messages nobody has saved lately belong to a dead process: interrupted.
        Returns their ids."""
        return self.mark_interrupted(saved_before=timezone.now() - timedelta(seconds=settings.CHAT_STALE_SECONDS))

    def save_progress(self, replies: list[tuple[int, str, str]]) -> None:
        """Replies being written, as (id, text, reasoning): their text so far, and `updated_at` now
        (the heartbeat that tells a live reply from one whose process died). A reply that is no
        longer streaming (finished, or interrupted by a sweep) is left as it is. One prepared
        statement for all of them, in one transaction: a process writes hundreds a second."""
        if not replies:
            return
        connection = connections[self.db]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        streaming = Message.Status.STREAMING.value
        table, quote = Message._meta.db_table, connection.ops.quote_name
        with transaction.atomic(using=self.db), connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {quote(table)} SET content = %s, reasoning = %s, updated_at = %s WHERE id = %s AND status = %s",
                [(text, reasoning, now, pk, streaming) for pk, text, reasoning in replies],
            )

    def mark_interrupted(self, *, saved_before) -> list[int]:
        """These streaming messages, if not saved since `saved_before`: interrupted. Returns the
        ids of those this call changed (each claimed once, when several processes sweep)."""
        stale = self.filter(status=Message.Status.STREAMING, updated_at__lt=saved_before).values_list("id", flat=True)
        return [pk for pk in list(stale) if Message.objects.filter(pk=pk, status=Message.Status.STREAMING).update(
            status=Message.Status.INTERRUPTED, error=INTERRUPTED_ERROR, updated_at=timezone.now())]


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Messages form a tree: an edit or a regenerated reply is a sibling of the message it replaces.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    reasoning = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True, default="")
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # A reply's gateway request (its usage rows'), so that the sweep bills the text it saved.
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # A conversation's messages in order, and "the latest N" for long ones.
            models.Index(fields=["conversation", "id"], name="message_conversation_order"),
            # The sweep for replies whose process died: only streaming rows are indexed.
            models.Index(
                fields=["updated_at"],
                name="message_streaming_updated",
                condition=models.Q(status="streaming"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    def save(self, *args, **kwargs):
        """A new message continues the branch shown unless it was given its place
        (`conversations.chat.tree.add`), and becomes that branch's tip: the member is where they
        last wrote."""
        adding = self._state.adding
        if adding and self.parent_id is None and not getattr(self, "placed", False):
            self.parent_id = _tip_of(self.conversation_id)
        super().save(*args, **kwargs)
        if adding:
            Conversation.objects.filter(pk=self.conversation_id).update(current_leaf=self.pk, updated_at=timezone.now())

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.STREAMING

    @property
    def can_regenerate(self) -> bool:
        return self.role == self.Role.ASSISTANT and self.is_final



def _tip_of(conversation_id: int) -> int | None:
    """The tip of the branch shown. It is always a tip (a new message becomes it, a switch goes to
    a branch's tip); conversations from before the tree have none yet: their newest message."""
    leaf = Conversation.objects.filter(pk=conversation_id).values_list("current_leaf_id", flat=True).first()
    if leaf is None:
        leaf = Message.objects.filter(conversation_id=conversation_id).order_by("-id").values_list("id", flat=True).first()
    return leaf
