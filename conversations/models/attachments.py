"""Files attached to a message: the row; the files themselves are in the attachments storage
(conversations.attachments owns reading, storing, showing and sending them)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Attachment(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image"  # PNG, JPEG, WebP or GIF: sent to vision models as an image_url part
        TEXT = "text"  # UTF-8 text: sent as a fenced block
        DOCUMENT = "document"  # PDF or DOCX: its extracted text sent as a fenced block

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="attachments")
    # Empty until the message it was attached to is sent.
    message = models.ForeignKey("conversations.Message", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="attachments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=255)  # as uploaded, for the page and the fenced block
    content_type = models.CharField(max_length=100)  # from the content, not the name
    size = models.PositiveBigIntegerField()  # bytes, as uploaded
    # Its name in the attachments storage; an edited message's copy shares its original's files,
    # deleted with the last row naming them (indexed for that question).
    file = models.CharField(max_length=255, db_index=True)
    thumbnail = models.CharField(max_length=255, blank=True, default="")  # images only
    width = models.PositiveIntegerField(null=True, blank=True)  # the stored image's (at most 2048)
    height = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField(blank=True, default="")  # text files and documents
    text_chars = models.PositiveIntegerField(default=0)  # len(text), so that pages need not load it
    # How much of `text` the model is sent (cut to fit its context window); None: all of it.
    sent_chars = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The foreign keys' own indexes serve the queries: a page's messages' attachments
        # (message), a conversation's (conversation), a member's (owner).
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return f"/attachments/{self.pk}/"

    @property
    def thumbnail_url(self) -> str:
        return f"/attachments/{self.pk}/thumbnail/"

    @property
    def cut_note(self) -> str:
        """Said on the page (and to the model) when the text was cut to fit."""
        if self.sent_chars is None:
            return ""
        return (f"Cut to fit the model's context window: the first {self.sent_chars:,} of "
                f"{self.text_chars:,} characters were sent.")
