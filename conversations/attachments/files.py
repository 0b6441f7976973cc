"""An uploaded file, read from its content (never trusted by its name or its declared type).

- Images: PNG, JPEG, WebP or GIF as Pillow reads them, at most 10 MB; scaled to at most 2048 px
  on their longer side (the file kept as it came when it is already within), with a thumbnail.
- Text: UTF-8, at most 1 MB (.txt, .md, .py, .csv, .json, any source file...).
- Documents: PDF (pypdf) and DOCX (python-docx), at most 20 MB, kept with their extracted text.

A file that cannot be taken raises AttachmentError, whose message names the file and says why.
"""

from __future__ import annotations

import io
import os
import unicodedata
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

MB = 1024 * 1024
IMAGE_MAX_BYTES = 10 * MB
TEXT_MAX_BYTES = 1 * MB
DOCUMENT_MAX_BYTES = 20 * MB
MAX_IMAGES = 8  # per message
MAX_SIDE = 2048  # px, the longer side of an image sent to a model
THUMBNAIL_SIDE = 320  # px
MAX_PIXELS = 64_000_000  # an image larger than this is refused before it is decoded (a "bomb")

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".svg", ".heic",
                  ".heif", ".avif", ".ico"}
PDF_TYPE = "application/pdf"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT_TYPE = "text/plain"
WHAT_FITS = "attach images (PNG, JPEG, WebP, GIF), UTF-8 text files, PDF or DOCX"


class AttachmentError(ValueError):
    """A file that cannot be attached; the message says which and why, for the page."""


@dataclass
class Prepared:
    """A file ready to be stored: what it is and the bytes to keep."""

    kind: str  # conversations.models.Attachment.Kind
    name: str
    content_type: str
    size: int  # as uploaded
    data: bytes  # what is stored (a scaled image, or the file as it came)
    thumbnail: bytes = b""  # WebP, images only
    width: int | None = None
    height: int | None = None
    text: str = ""  # text files and documents


def read_upload(upload) -> Prepared:
    """A Django UploadedFile: its size is checked before it is read."""
    name = clean_name(upload.name)
    if upload.size > DOCUMENT_MAX_BYTES:
        raise AttachmentError(f"{name} is {megabytes(upload.size)}: a file can be at most 20 MB "
                              "(an image 10 MB, a text file 1 MB).")
    return read(name, upload.read())


def read(name: str, data: bytes) -> Prepared:
    name = clean_name(name)
    suffix = os.path.splitext(name)[1].lower()
    if len(data) > DOCUMENT_MAX_BYTES:
        raise AttachmentError(f"{name} is {megabytes(len(data))}: a file can be at most 20 MB.")
    if b"%PDF-" in data[:1024]:
        return _pdf(name, data)
    image = _image(name, data)
    if image is not None:
        return image
    if suffix == ".pdf":
        raise AttachmentError(f"{name} could not be read as a PDF (its content is not one).")
    if suffix == ".docx":
        return _docx(name, data)
    if suffix in IMAGE_SUFFIXES:
        raise AttachmentError(f"{name} is not a PNG, JPEG, WebP or GIF image (read from its content, not its name).")
    return _text(name, data, suffix)


def clean_name(name: str | None) -> str:
    """The file's own name: no folders, no control characters, at most 255 characters."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if not base:
        return "file"
    stem, suffix = os.path.splitext(base)
    return base if len(base) <= 255 else stem[: 255 - len(suffix[:20])] + suffix[:20]


def megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB"


# -- images


def _image(name: str, data: bytes) -> Prepared | None:
    """An image of one of the four formats, or None when Pillow recognises none of them."""
    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES)) as probe:
            kind, (width, height) = probe.format, probe.size
            if width * height > MAX_PIXELS:
                raise AttachmentError(f"{name} is {width}×{height} pixels: too large to read.")
            probe.verify()
    except UnidentifiedImageError:
        return None
    except AttachmentError:
        raise
    except Exception:
        raise AttachmentError(f"{name} could not be read as an image (it may be damaged).") from None
    if len(data) > IMAGE_MAX_BYTES:
        raise AttachmentError(f"{name} is {megabytes(len(data))}: an image can be at most 10 MB.")
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            image.load()
            stored = data
            if max(image.size) > MAX_SIDE:
                image = ImageOps.exif_transpose(image)
                image.thumbnail((MAX_SIDE, MAX_SIDE))
                stored = _encode(image, kind)
            width, height = image.size
            thumbnail = image.copy()
    except Exception:
        raise AttachmentError(f"{name} could not be read as an image (it may be damaged).") from None
    thumbnail = ImageOps.exif_transpose(thumbnail)
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return Prepared(kind="image", name=name, content_type=IMAGE_TYPES[kind], size=len(data), data=stored,
                    thumbnail=_encode(thumbnail, "WEBP"), width=width, height=height)


def _encode(image: Image.Image, kind: str) -> bytes:
    if kind in ("JPEG", "WEBP"):
        alpha = kind == "WEBP" and image.has_transparency_data
        image = image.convert("RGBA" if alpha else "RGB")
    out = io.BytesIO()
    image.save(out, format=kind, **({"quality": 85} if kind in ("JPEG", "WEBP") else {}))
    return out.getvalue()


# -- text


def _text(name: str, data: bytes, suffix: str) -> Prepared:
    try:
        text = data.decode("utf-8-sig")
        if "\x00" in text:
            raise ValueError("NUL")
    except ValueError:
        if suffix in BINARY_SUFFIXES:
            raise AttachmentError(f"{name} cannot be attached: {WHAT_FITS}.") from None
        raise AttachmentError(f"{name} is not UTF-8 text: save it as UTF-8 and attach it again.") from None
    if len(data) > TEXT_MAX_BYTES:
        raise AttachmentError(f"{name} is {megabytes(len(data))}: a text file can be at most 1 MB.")
    return Prepared(kind="text", name=name, content_type=TEXT_TYPE, size=len(data), data=data, text=text)


# Not text, whatever they hold: the error says what can be attached rather than "not UTF-8".
BINARY_SUFFIXES = {".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods", ".zip", ".gz", ".tar", ".7z",
                   ".rar", ".exe", ".dll", ".so", ".bin", ".mp3", ".mp4", ".mov", ".wav", ".avi", ".mkv"}


# -- documents


def _pdf(name: str, data: bytes) -> Prepared:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AttachmentError(f"{name} is protected by a password: attach a copy without one.")
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except AttachmentError:
        raise
    except Exception:
        raise AttachmentError(f"{name} could not be read as a PDF (it may be damaged).") from None
    return _document(name, data, PDF_TYPE, text)


def _docx(name: str, data: bytes) -> Prepared:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows)
            else:
                blocks.append(block.text)
        text = "\n".join(blocks)
    except Exception:
        raise AttachmentError(f"{name} could not be read as a Word document (DOCX; it may be damaged).") from None
    return _document(name, data, DOCX_TYPE, text)


def _document(name: str, data: bytes, content_type: str, text: str) -> Prepared:
    if len(data) > DOCUMENT_MAX_BYTES:
        raise AttachmentError(f"{name} is {megabytes(len(data))}: a document can be at most 20 MB.")
    # What a database can store: no NUL, no lone surrogate (a PDF's text may hold either).
    text = text.replace("\x00", "").encode("utf-8", "replace").decode().strip()
    if not text:
        raise AttachmentError(f"{name} has no text to read (a scanned document holds only pictures of its pages).")
    return Prepared(kind="document", name=name, content_type=content_type, size=len(data), data=data, text=text)
