"""What a model is sent for a message with attachments.

Text files and documents go as fenced blocks after the message's text (each named, the fence
longer than any run of backticks inside); their text is cut, when the message is sent, to fit what
the model's context window leaves (`cut_to_fit`), and the block then says so, as the page does.
Images go as `image_url` parts (data URLs of the stored image, at most 2048 px) to a model that
supports vision; a model without it is told in words that an image was there.
"""

from __future__ import annotations

import base64
import os
import re

from asgiref.sync import sync_to_async

from conversations.attachments import store
from conversations.gateway.usage import estimate_tokens
from conversations.models import Attachment

# A rough cost of one image for trimming the history to the context window (OpenAI counts 85 to
# about 1,100 tokens for one, by its size).
IMAGE_TOKENS = 1000
CHARS_PER_TOKEN = 4  # as conversations.gateway.usage.estimate_tokens counts
LANGUAGES = {".py": "python", ".md": "markdown", ".js": "javascript", ".ts": "typescript", ".yml": "yaml",
             ".yaml": "yaml", ".sh": "bash", ".rs": "rust", ".rb": "ruby", ".txt": "", ".csv": "csv",
             ".json": "json", ".html": "html", ".css": "css", ".sql": "sql", ".toml": "toml", ".xml": "xml",
             ".go": "go", ".java": "java", ".c": "c", ".h": "c", ".cpp": "cpp", ".kt": "kotlin", ".swift": "swift"}


def cut_to_fit(attachments: list[Attachment], room_tokens: int | None) -> dict[int, int]:
    """How many characters of each attachment's text fit in `room_tokens`, in order: {pk: chars}
    for those cut (the others go whole)."""
    cuts = {}
    if room_tokens is None:
        return cuts
    room = max(room_tokens - IMAGE_TOKENS * len(images_of(attachments)), 0)
    for attachment in attachments:
        if attachment.kind == Attachment.Kind.IMAGE:
            continue
        frame = estimate_tokens(_block(attachment, "", "")) + 1
        needed = frame + estimate_tokens("x" * attachment.text_chars)
        if needed <= room:
            room -= needed
            continue
        cuts[attachment.pk] = max((room - frame) * CHARS_PER_TOKEN, 0)
        room = 0
    return cuts


def with_text_files(text: str, attachments: list[Attachment]) -> str:
    """The message's text, then a fenced block for each text file or document."""
    blocks = [_block(a, a.text if a.sent_chars is None else a.text[: a.sent_chars], a.cut_note)
              for a in attachments if a.kind != Attachment.Kind.IMAGE]
    return "\n\n".join([text, *blocks]) if blocks else text


def _block(attachment: Attachment, body: str, note: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    language = "" if attachment.kind == Attachment.Kind.DOCUMENT else LANGUAGES.get(
        os.path.splitext(attachment.name)[1].lower(), "")
    return f"{attachment.name}:\n{fence}{language}\n{body}\n{fence}" + (f"\n({note})" if note else "")


def images_of(attachments: list[Attachment]) -> list[Attachment]:
    return [a for a in attachments if a.kind == Attachment.Kind.IMAGE]


def tokens(text: str, attachments: list[Attachment]) -> int:
    """The estimated cost of a message's content (its text with the text files in it) and images."""
    return estimate_tokens(text) + IMAGE_TOKENS * len(images_of(attachments))


async def content(text: str, attachments: list[Attachment], *, vision: bool) -> str | list[dict]:
    """A user message's `content`, its text files already in `text` (with_text_files)."""
    images = images_of(attachments)
    if not images:
        return text
    if not vision:
        said = "\n".join(f"[An image was attached here ({a.name}); this model cannot see images.]" for a in images)
        return f"{text}\n\n{said}"
    return [{"type": "text", "text": text},
            *[{"type": "image_url", "image_url": {"url": await data_url(a)}} for a in images]]


async def data_url(attachment: Attachment) -> str:
    data = await sync_to_async(store.read)(attachment.file)
    return f"data:{attachment.content_type};base64,{base64.b64encode(data).decode()}"
