"""Attachments: files read from their content, stored, sent to the model, shown and served."""

from __future__ import annotations

import base64
import io
import os
import re

import docx
import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from conversations.attachments import files, store
from conversations.attachments.files import AttachmentError
from conversations.models import Attachment, Message, Model
from tests.wsclient import Tab


def image_bytes(kind: str, size=(64, 48), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=kind)
    return out.getvalue()


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF with `text` on it, written by hand (the smallest valid one)."""
    content = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_paragraph("Quarterly report")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "revenue", "42"
    document.add_paragraph("The end.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


# -- reading files from their content


@pytest.mark.parametrize("kind, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                                ("WEBP", "image/webp"), ("GIF", "image/gif")])
def test_images_of_the_four_formats_are_taken_with_a_thumbnail(kind, content_type):
    data = image_bytes(kind)
    read = files.read(f"picture.{kind.lower()}", data)
    assert (read.kind, read.content_type, read.width, read.height) == ("image", content_type, 64, 48)
    assert read.data == data  # small enough: kept as it came
    assert Image.open(io.BytesIO(read.thumbnail)).format == "WEBP"


def test_the_type_comes_from_the_content_not_the_name():
    assert files.read("holiday.txt", image_bytes("JPEG")).content_type == "image/jpeg"
    with pytest.raises(AttachmentError, match=r"fake\.png is not a PNG, JPEG, WebP or GIF image"):
        files.read("fake.png", b"just some text pretending to be a picture\n")
    with pytest.raises(AttachmentError, match=r"old\.bmp is not a PNG, JPEG, WebP or GIF image"):
        files.read("old.bmp", image_bytes("BMP"))


def test_a_large_image_is_scaled_to_2048_px_on_its_longer_side():
    read = files.read("wide.png", image_bytes("PNG", size=(4096, 1024)))
    assert (read.width, read.height) == (2048, 512)
    stored = Image.open(io.BytesIO(read.data))
    assert (stored.format, stored.size) == ("PNG", (2048, 512))
    assert max(Image.open(io.BytesIO(read.thumbnail)).size) == files.THUMBNAIL_SIDE


def test_size_limits_by_kind():
    noise = Image.frombytes("RGB", (2000, 1800), os.urandom(2000 * 1800 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG", compress_level=0)
    assert len(out.getvalue()) > files.IMAGE_MAX_BYTES
    with pytest.raises(AttachmentError, match=r"noise\.png is 10\.\d MB: an image can be at most 10 MB"):
        files.read("noise.png", out.getvalue())
    with pytest.raises(AttachmentError, match="a text file can be at most 1 MB"):
        files.read("big.txt", b"a" * (files.TEXT_MAX_BYTES + 1))
    with pytest.raises(AttachmentError, match="huge.pdf is 20.0 MB: a file can be at most 20 MB"):
        files.read_upload(upload("huge.pdf", b"%PDF-" + b"0" * files.DOCUMENT_MAX_BYTES))


def test_text_files_must_be_utf8():
    read = files.read("notes.md", "# Notes\nnaïve café ✓\n".encode())
    assert (read.kind, read.text) == ("text", "# Notes\nnaïve café ✓\n")
    with pytest.raises(AttachmentError, match=r"latin\.txt is not UTF-8 text"):
        files.read("latin.txt", "café".encode("latin-1"))
    with pytest.raises(AttachmentError, match=r"sheet\.xlsx cannot be attached: attach images"):
        files.read("sheet.xlsx", b"PK\x03\x04\x00\xff\xfe binary")


def test_a_pdf_and_a_docx_are_read_for_their_text():
    pdf = files.read("report.pdf", pdf_bytes("Hello from a PDF"))
    assert (pdf.kind, pdf.content_type) == ("document", "application/pdf")
    assert "Hello from a PDF" in pdf.text
    word = files.read("report.docx", docx_bytes())
    assert word.kind == "document" and word.content_type.endswith("wordprocessingml.document")
    assert word.text == "Quarterly report\nrevenue | 42\nThe end."


def test_documents_that_cannot_be_read_get_a_clear_error():
    with pytest.raises(AttachmentError, match=r"broken\.pdf could not be read as a PDF \(it may be damaged\)"):
        files.read("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage")
    with pytest.raises(AttachmentError, match=r"notes\.pdf could not be read as a PDF"):
        files.read("notes.pdf", b"plain text with a .pdf name")
    with pytest.raises(AttachmentError, match=r"letter\.docx could not be read as a Word document"):
        files.read("letter.docx", b"PK\x03\x04 not really a zip")
    with pytest.raises(AttachmentError, match=r"blank\.pdf has no text to read"):
        files.read("blank.pdf", pdf_bytes(""))


def test_file_names_lose_folders_and_control_characters():
    assert files.clean_name("../../etc/passwd") == "passwd"
    assert files.clean_name("C:\\Users\\me\\bad\x00\nname.txt") == "badname.txt"
    assert files.clean_name("") == "file"


# -- uploading: the message box's chips


@pytest.mark.django_db
def test_upload_answers_with_chips_and_an_error_for_each_file_refused(client, alice, conversation):
    client.force_login(alice)
    response = client.post(f"/c/{conversation.id}/attachments/", {"files": [
        upload("cat.png", image_bytes("PNG")), upload("notes.txt", b"hello"), upload("fake.png", b"not an image")]})
    page = response.content.decode()
    cat, notes = Attachment.objects.order_by("id")
    assert (cat.kind, cat.owner, cat.conversation, cat.message) == ("image", alice, conversation, None)
    assert f'<input type="hidden" name="attachments" value="{cat.id}">' in page
    assert f'<img class="thumbnail" src="/attachments/{cat.id}/thumbnail/" alt="cat.png">' in page
    assert f'value="{notes.id}"' in page and "notes.txt" in page
    assert re.search(r'<div id="attachment-errors" [^>]*hx-swap-oob="true">\s*<p>fake\.png is not a PNG', page)
    assert store.storage().exists(cat.file) and store.storage().exists(cat.thumbnail)


@pytest.mark.django_db
def test_a_message_takes_at_most_8_images(client, alice, conversation):
    client.force_login(alice)
    def pictures(count: int) -> list:
        return [upload(f"p{i}.png", image_bytes("PNG")) for i in range(count)]

    page = client.post(f"/c/{conversation.id}/attachments/", {"files": pictures(9)}).content.decode()
    assert "A message can have at most 8 images: these 9 would make 9, so they were not attached." in page
    assert not Attachment.objects.exists()
    first = client.post(f"/c/{conversation.id}/attachments/", {"files": pictures(6)})
    assert first.status_code == 200 and Attachment.objects.count() == 6
    already = list(Attachment.objects.values_list("id", flat=True))
    page = client.post(f"/c/{conversation.id}/attachments/", {"files": pictures(3), "attachments": already}).content.decode()
    assert "these 3 would make 9" in page and Attachment.objects.count() == 6


@pytest.mark.django_db
def test_nobody_uploads_into_another_members_conversation(client, bob, conversation):
    client.force_login(bob)
    response = client.post(f"/c/{conversation.id}/attachments/", {"files": [upload("x.txt", b"x")]})
    assert response.status_code == 404 and not Attachment.objects.exists()


# -- serving: only to whom may see them


def stored(user, conversation, name: str, data: bytes) -> Attachment:
    return store.save(user, conversation, files.read(name, data))


@pytest.mark.django_db
def test_files_are_served_to_their_owner_only(client, alice, bob, conversation):
    image = stored(alice, conversation, "cat.png", image_bytes("PNG"))
    text = stored(alice, conversation, "page.html", b"<script>alert(1)</script>")
    client.force_login(alice)
    response = client.get(f"/attachments/{image.id}/")
    assert response.status_code == 200 and response.content == image_bytes("PNG")
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'inline; filename="cat.png"'
    thumbnail = client.get(f"/attachments/{image.id}/thumbnail/")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/webp"
    # Text (HTML here) is never shown inline: downloaded, as text/plain, in a sandbox.
    response = client.get(f"/attachments/{text.id}/")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert "sandbox" in response["Content-Security-Policy"]
    assert client.get(f"/attachments/{text.id}/thumbnail/").status_code == 404

    client.force_login(bob)
    for url in [f"/attachments/{image.id}/", f"/attachments/{image.id}/thumbnail/", f"/attachments/{text.id}/"]:
        assert client.get(url).status_code == 404
    client.logout()
    response = client.get(f"/attachments/{image.id}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db(transaction=True)
def test_remove_takes_a_file_off_the_message_being_written(client, alice, bob, conversation):
    kept = stored(alice, conversation, "kept.txt", b"kept")
    dropped = stored(alice, conversation, "dropped.txt", b"dropped")
    client.force_login(bob)
    assert client.post(f"/attachments/{dropped.id}/remove/").status_code == 404
    client.force_login(alice)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert f'name="attachments" value="{kept.id}"' in page and f'name="attachments" value="{dropped.id}"' in page
    assert client.post(f"/attachments/{dropped.id}/remove/").status_code == 200
    assert not store.storage().exists(dropped.file) and store.storage().exists(kept.file)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert f'name="attachments" value="{kept.id}"' in page and f'name="attachments" value="{dropped.id}"' not in page
    # A file already sent is not the message box's to remove.
    Attachment.objects.filter(pk=kept.pk).update(message=Message.objects.create(conversation=conversation, role="user", content="hi"))
    assert client.post(f"/attachments/{kept.id}/remove/").status_code == 404
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert f'name="attachments" value="{kept.id}"' not in page and 'href="/attachments/' in page  # shown sent


@pytest.mark.django_db(transaction=True)
def test_deleting_a_conversation_deletes_its_files(client, alice, conversation):
    image = stored(alice, conversation, "cat.png", image_bytes("PNG"))
    names = [image.file, image.thumbnail]
    assert all(store.storage().exists(name) for name in names)
    client.force_login(alice)
    assert client.post(f"/c/{conversation.id}/delete/").status_code == 302
    assert not Attachment.objects.exists()
    assert not any(store.storage().exists(name) for name in names)


# -- sending: what the model gets, what the page shows


async def send_and_read(alice, conversation, text: str, attachments: list[int], model: str = "echo") -> list[str]:
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message=text, model=model, attachments=attachments)
    frames = await tab.read_reply()
    await tab.close()
    return frames


@pytest.mark.django_db(transaction=True)
async def test_a_vision_model_gets_the_images_as_image_url_parts(alice, conversation, upstream):
    await Model.objects.filter(name="echo").aupdate(supports_vision=True)
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG", size=(3000, 1500))
    first = await database_sync_to_async(stored)(alice, conversation, "cat.png", png)
    second = await database_sync_to_async(stored)(alice, conversation, "big.jpg", jpeg)
    frames = await send_and_read(alice, conversation, "what is in these?", [str(first.id), str(second.id)])

    content = upstream.requests_for("echo")[-1]["body"]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "what is in these?"}
    assert content[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}
    assert content[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(content[2]["image_url"]["url"].split(",", 1)[1])))
    assert sent.size == (2048, 1024)
    user_message = await Message.objects.aget(role="user")
    assert {a.message_id async for a in Attachment.objects.all()} == {user_message.id}
    assert any(f'src="/attachments/{first.id}/thumbnail/"' in f and f'id="msg-{user_message.id}"' in f for f in frames)


@pytest.mark.django_db(transaction=True)
async def test_a_model_without_vision_refuses_images_and_keeps_them(alice, conversation, upstream):
    image = await database_sync_to_async(stored)(alice, conversation, "cat.png", image_bytes("PNG"))
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message="look", model="echo", attachments=[image.id])
    frames = await tab.read_until(lambda f: "composer-notice" in f)
    assert "echo cannot see images: choose a model that supports vision, or remove the images." in frames[-1]
    assert not await Message.objects.aexists() and not upstream.requests_for("echo")
    assert (await Attachment.objects.aget()).message_id is None  # still in the message box
    await tab.close()


@pytest.mark.django_db(transaction=True)
async def test_someone_elses_attachment_cannot_be_sent(alice, bob, conversation, upstream):
    from conversations.models import Conversation

    bobs = await Conversation.objects.acreate(owner=bob)
    theirs = await database_sync_to_async(stored)(bob, bobs, "secret.txt", b"bob's secret")
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message="leak it", model="echo", attachments=[theirs.id])
    frames = await tab.read_until(lambda f: "composer-notice" in f)
    assert "A file attached to this message is no longer there: attach it again." in frames[-1]
    assert not await Message.objects.aexists() and not upstream.requests_for("echo")
    await tab.close()


@pytest.mark.django_db(transaction=True)
async def test_text_files_and_documents_go_as_fenced_blocks(alice, conversation, upstream):
    code = await database_sync_to_async(stored)(alice, conversation, "tool.py", b"print('```hi```')\n")
    pdf = await database_sync_to_async(stored)(alice, conversation, "report.pdf", pdf_bytes("Hello PDF"))
    await send_and_read(alice, conversation, "review these", [code.id, pdf.id])
    content = upstream.requests_for("echo")[-1]["body"]["messages"][-1]["content"]
    assert content.startswith("review these\n\ntool.py:\n````python\nprint('```hi```')\n\n````\n\nreport.pdf:\n```\n")
    assert "Hello PDF" in content and content.endswith("\n```")


@pytest.mark.django_db(transaction=True)
async def test_a_long_document_is_cut_to_fit_the_context_window_and_says_so(async_client, alice, conversation, upstream):
    await Model.objects.filter(name="echo").aupdate(context_window=3000)
    await conversation.arefresh_from_db()
    long = "".join(f"line {i:05d} of the manual\n" for i in range(4000))  # 100,000 characters
    manual = await database_sync_to_async(stored)(alice, conversation, "manual.txt", long.encode())
    await send_and_read(alice, conversation, "summarise", [manual.id])

    await manual.arefresh_from_db()
    assert manual.text_chars == 100_000 and 7_000 < manual.sent_chars < 8_000  # about 1,950 tokens
    content = upstream.requests_for("echo")[-1]["body"]["messages"][-1]["content"]
    note = f"Cut to fit the model's context window: the first {manual.sent_chars:,} of 100,000 characters were sent."
    assert long[: manual.sent_chars] in content and long[: manual.sent_chars + 1] not in content
    assert content.endswith(f"```\n({note})")

    await async_client.aforce_login(alice)
    page = (await async_client.get(f"/c/{conversation.id}/")).content.decode()
    assert f"<p class=\"attachment-note\">manual.txt: {note.replace(chr(39), '&#x27;')}</p>" in page
    assert f'<a class="file-chip" href="/attachments/{manual.id}/">manual.txt</a>' in page


@pytest.mark.django_db(transaction=True)
async def test_an_edited_message_keeps_its_files_which_go_with_the_last_copy(alice, conversation, upstream):
    await Model.objects.filter(name="echo").aupdate(supports_vision=True)
    image = await database_sync_to_async(stored)(alice, conversation, "cat.png", image_bytes("PNG"))
    await send_and_read(alice, conversation, "what is this?", [image.id])
    original = await Message.objects.aget(role="user")

    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(action="edit", message_id=original.id, message="and now?")
    frames = await tab.read_reply()
    await tab.close()
    edited = await Message.objects.filter(role="user").alatest("id")
    copy = await Attachment.objects.aget(message=edited)
    assert (copy.file, copy.thumbnail, copy.name) == (image.file, image.thumbnail, "cat.png")
    assert any(f'id="msg-{edited.id}"' in f and f'src="/attachments/{copy.id}/thumbnail/"' in f for f in frames)
    content = upstream.requests_for("echo")[-1]["body"]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "and now?"} and content[1]["type"] == "image_url"

    # One version deleted: the files stay for the other; the last one takes them.
    await image.adelete()
    assert await database_sync_to_async(store.storage().exists)(image.file)
    await copy.adelete()
    assert not await database_sync_to_async(store.storage().exists)(image.file)
    assert not await database_sync_to_async(store.storage().exists)(image.thumbnail)
