"""Where attachments are kept: the files in the storage named `attachments` (settings.STORAGES:
a folder under var/ by default, any Django storage backend by setting), the rows in the database.

An upload is stored at once, as an attachment of its conversation with no message yet; sending the
message claims it (`claim`, then `attach`); an edited version of a message gets copies (`copy`).
Deleting an attachment's row (with its message, its conversation or its owner) deletes its files
once the deletion is committed and no copy names them.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict

from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models.signals import post_delete

from conversations.attachments import files
from conversations.attachments.files import MAX_IMAGES, AttachmentError, Prepared
from conversations.ids import parse_id
from conversations.models import Attachment, Conversation, Message

log = logging.getLogger("chatsite.attachments")

STORAGE = "attachments"
SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
            files.PDF_TYPE: ".pdf", files.DOCX_TYPE: ".docx", files.TEXT_TYPE: ".txt"}
MAX_IDS = 100  # attachment ids in one request: far more than a message can have


def storage():
    return storages[STORAGE]


def add(owner, conversation: Conversation, uploads, attached=()) -> tuple[list[Attachment], list[str]]:
    """Read and store each upload for the message being written in `conversation` (which already
    has the `attached` ones): the new attachments, and an error for each file refused."""
    prepared, errors = [], []
    for upload in uploads:
        try:
            prepared.append(files.read_upload(upload))
        except AttachmentError as exc:
            errors.append(str(exc))
    images = [p for p in prepared if p.kind == Attachment.Kind.IMAGE]
    already = pending(owner, conversation, attached).filter(kind=Attachment.Kind.IMAGE).count()
    if images and already + len(images) > MAX_IMAGES:
        errors.append(f"A message can have at most {MAX_IMAGES} images: these {len(images)} would make "
                      f"{already + len(images)}, so they were not attached.")
        prepared = [p for p in prepared if p.kind != Attachment.Kind.IMAGE]
    return [save(owner, conversation, p) for p in prepared], errors


def save(owner, conversation: Conversation, prepared: Prepared) -> Attachment:
    stem = f"{owner.pk}/{secrets.token_hex(16)}"
    name = storage().save(stem + SUFFIXES[prepared.content_type], ContentFile(prepared.data))
    thumbnail = storage().save(f"{stem}-thumbnail.webp", ContentFile(prepared.thumbnail)) if prepared.thumbnail else ""
    return Attachment.objects.create(
        owner=owner, conversation=conversation, kind=prepared.kind, name=prepared.name,
        content_type=prepared.content_type, size=prepared.size, file=name, thumbnail=thumbnail,
        width=prepared.width, height=prepared.height, text=prepared.text, text_chars=len(prepared.text))


def ids(value) -> list[int]:
    """Attachment ids as a form sends them (one, a list, none), each a whole number."""
    values = value if isinstance(value, list) else [value]
    return [pk for pk in map(parse_id, values[:MAX_IDS]) if pk is not None]


def pending(owner, conversation: Conversation, attached):
    """The member's attachments of the message being written: uploaded here, not sent yet."""
    return Attachment.objects.filter(owner=owner, conversation=conversation, message=None, pk__in=ids(attached))


def waiting(owner, conversation: Conversation) -> list[Attachment]:
    """What the member attached here and has not sent yet (the message box shows it again)."""
    return list(Attachment.objects.filter(owner=owner, conversation=conversation, message=None).defer("text"))


def remove(owner, pk: int) -> bool:
    """An attachment taken off the message being written (its files go with it)."""
    deleted, _ = Attachment.objects.filter(owner=owner, pk=pk, message=None).delete()
    return bool(deleted)


def claim(owner, conversation: Conversation, attached) -> list[Attachment]:
    """The attachments a message is sent with, checked; raises AttachmentError."""
    wanted = set(ids(attached))
    if not wanted:
        return []
    found = list(pending(owner, conversation, list(wanted)).defer("text"))
    if len(found) != len(wanted):
        raise AttachmentError("A file attached to this message is no longer there: attach it again.")
    if sum(a.kind == Attachment.Kind.IMAGE for a in found) > MAX_IMAGES:
        raise AttachmentError(f"A message can have at most {MAX_IMAGES} images: remove some.")
    return found


aclaim = sync_to_async(claim)


def attach(attachments: list[Attachment], message: Message, cuts: dict[int, int]) -> list[Attachment]:
    """The claimed attachments become `message`'s, the text of those in `cuts` cut to that many
    characters (conversations.attachments.upstream.cut_to_fit). Returns those this call attached
    (a second tab sending the same ones at the same moment gets none)."""
    attached = []
    for attachment in attachments:
        attachment.sent_chars = cuts.get(attachment.pk)
        if Attachment.objects.filter(pk=attachment.pk, message=None).update(message=message, sent_chars=attachment.sent_chars):
            attachment.message = message
            attached.append(attachment)
    return attached


aattach = sync_to_async(attach)


def list_for(messages: list[Message]) -> list[Message]:
    """Each message's attachments as `attachment_list`, in one query (without their text)."""
    wanted = [m.id for m in messages if m.role == Message.Role.USER]
    by_message = defaultdict(list)
    if wanted:
        for attachment in Attachment.objects.filter(message_id__in=wanted).defer("text"):
            by_message[attachment.message_id].append(attachment)
    for message in messages:
        message.attachment_list = by_message.get(message.id, [])
    return messages


alist_for = sync_to_async(list_for)


def for_messages(message_ids: list[int]) -> dict[int, list[Attachment]]:
    """The attachments of these messages, with their text (what a reply's history sends)."""
    by_message = defaultdict(list)
    for attachment in Attachment.objects.filter(message_id__in=message_ids):
        by_message[attachment.message_id].append(attachment)
    return by_message


def read(name: str) -> bytes:
    with storage().open(name) as handle:
        return handle.read()


def copy(message_id: int, message: Message) -> list[Attachment]:
    """The attachments of one message, attached to another too (an edited version of it): the
    same files, in rows of their own."""
    originals = Attachment.objects.filter(message_id=message_id)
    skipped = {"id", "message_id", "created_at"}
    fields = [f.attname for f in Attachment._meta.concrete_fields if f.attname not in skipped]
    return Attachment.objects.bulk_create(
        [Attachment(message=message, **{name: getattr(a, name) for name in fields}) for a in originals])


acopy = sync_to_async(copy)


def _delete_files(sender, instance: Attachment, **kwargs) -> None:
    transaction.on_commit(lambda: delete_files(instance.file, instance.thumbnail))


def delete_files(name: str, thumbnail: str = "") -> None:
    """An attachment's files, unless another row (a copy) still names them."""
    if Attachment.objects.filter(file=name).exists():
        return
    for each in filter(None, (name, thumbnail)):
        try:
            storage().delete(each)
        except Exception:  # the storage away: the row is gone anyway, and the name is logged
            log.warning("could not delete the attachment file %s", each, exc_info=True)


def connect_signals() -> None:
    post_delete.connect(_delete_files, sender=Attachment, dispatch_uid="conversations.attachments.files")
