"""All of a member's data as one zip (Export all data on /settings/): a JSON file per
conversation, the same document as its own JSON export (conversations.transfer.export), and the
files that go with each conversation under attachments/<conversation id>/.

The zip is written to a temporary file (conversation by conversation, messages prefetched in
chunks), never held in memory whole. Only the member's own conversations are in it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from typing import BinaryIO

from django.db.models import Prefetch
from django.utils.text import slugify

from conversations.attachments import store
from conversations.models import Attachment, Conversation, Message
from conversations.transfer import export

CHUNK = 100  # conversations whose messages are read in one query


def conversation_files(conversation: Conversation) -> Iterable[tuple[str, BinaryIO]]:
    """The files that belong to `conversation` (conversations.attachments): (path inside its
    attachments/<id>/ folder, "<attachment id>-<name as uploaded>", and the stored file, opened
    through the attachments storage, closed once copied). `conversation.attachments` may be
    prefetched (write() does)."""
    for attachment in conversation.attachments.all():
        yield f"{attachment.pk}-{attachment.name}", store.storage().open(attachment.file, "rb")


def json_name(conversation: Conversation) -> str:
    return f"{conversation.pk}-{slugify(conversation.title)[:60] or 'conversation'}.json"


def write(user, target: BinaryIO) -> int:
    """Write `user`'s zip into `target`; the number of conversations in it."""
    conversations = (Conversation.objects.filter(owner=user).select_related(*_named_relations()).order_by("id")
                     .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("id")),
                                       Prefetch("attachments", queryset=Attachment.objects.only("pk", "conversation_id", "name", "file").order_by("pk"))))
    count = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for conversation in conversations.iterator(chunk_size=CHUNK):
            document = json.dumps(export.as_json(conversation), ensure_ascii=False, indent=2)
            archive.writestr(json_name(conversation), document)
            for path, file in conversation_files(conversation):
                with file, archive.open(f"attachments/{conversation.pk}/{path.lstrip('/')}", "w") as out:
                    shutil.copyfileobj(file, out)
            count += 1
    return count


def build(user) -> BinaryIO:
    """`user`'s zip in a temporary file (deleted once closed), at its start."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it once sent
    write(user, file)
    file.seek(0)
    return file


def _named_relations() -> list[str]:
    return [field.name for field in export.settings_fields() if field.is_relation]
