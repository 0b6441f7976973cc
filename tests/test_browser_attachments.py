"""Attachments in a real browser (chromium): the picker, paste and drop, thumbnails, refusals."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import expect

from conversations.models import Attachment, Model
from tests.test_attachments import image_bytes
from tests.test_browser import open_new_chat, send
from tests.test_browser_chat_tree import wait_for_socket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def png(name: str = "cat.png") -> dict:
    return {"name": name, "mimeType": "image/png", "buffer": image_bytes("PNG", size=(120, 80))}


def test_attach_files_shows_a_thumbnail_sends_it_and_keeps_it_after_a_reload(page, site_server, alice, provider, upstream):
    Model.objects.filter(name="echo").update(supports_vision=True)
    open_new_chat(page, site_server)
    page.get_by_label("Attach files").set_input_files([png(), {"name": "notes.md", "mimeType": "text/markdown",
                                                                "buffer": b"# Shopping\n- milk\n"}])
    tray = page.locator("#attachment-tray")
    expect(tray.get_by_role("img", name="cat.png")).to_be_visible()
    expect(tray).to_contain_text("notes.md")
    # The thumbnail really loaded, through the serving view.
    expect(tray.get_by_role("img", name="cat.png")).to_have_js_property("complete", True)
    assert tray.get_by_role("img", name="cat.png").evaluate("img => img.naturalWidth") > 0

    send(page, "what is this?", "echo")
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: what is this?")
    expect(tray.locator(".attachment-chip")).to_have_count(0)
    question = page.locator(".message.user")
    expect(question.get_by_role("img", name="cat.png")).to_be_visible()
    expect(question.get_by_role("link", name="notes.md")).to_be_visible()
    body = upstream.requests_for("echo")[-1]["body"]
    parts = body["messages"][-1]["content"]
    assert parts[0]["text"] == "what is this?\n\nnotes.md:\n```markdown\n# Shopping\n- milk\n\n```"
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png()["buffer"]).decode()

    page.reload()
    wait_for_socket(page)
    image = page.locator(".message.user").get_by_role("img", name="cat.png")
    expect(image).to_be_visible()
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0


def test_paste_and_drop_attach_files_and_a_bad_one_gets_an_error(page, site_server, alice, provider):
    Model.objects.filter(name="echo").update(supports_vision=True)
    open_new_chat(page, site_server)
    encoded = base64.b64encode(png("pasted.png")["buffer"]).decode()
    # A screenshot pasted into the message box.
    page.get_by_label("Message").evaluate("""(box, encoded) => {
        const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
        box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
    }""", encoded)
    expect(page.locator("#attachment-tray").get_by_role("img", name="pasted.png")).to_be_visible()
    # Files dropped on the chat: a text file, and a "picture" that is really text.
    page.locator("#messages").evaluate("""(list) => {
        const data = new DataTransfer();
        data.items.add(new File(["print('hi')\\n"], "tool.py", { type: "text/x-python" }));
        data.items.add(new File(["not a picture"], "fake.png", { type: "image/png" }));
        list.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
        list.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    }""")
    expect(page.locator("#attachment-tray")).to_contain_text("tool.py")
    expect(page.locator("#attachment-errors")).to_have_text(
        "fake.png is not a PNG, JPEG, WebP or GIF image (read from its content, not its name).")
    expect(page.locator("#attachment-tray .attachment-chip")).to_have_count(2)

    # Remove takes one off the message; what is left stays in the box over a reload.
    page.get_by_role("button", name="Remove tool.py").click()
    expect(page.locator("#attachment-tray .attachment-chip")).to_have_count(1)
    page.reload()
    wait_for_socket(page)
    expect(page.locator("#attachment-tray").get_by_role("img", name="pasted.png")).to_be_visible()
    expect(page.locator("#attachment-tray .attachment-chip")).to_have_count(1)
    send(page, "and this?", "echo")
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: and this?")
    expect(page.locator(".message.user").get_by_role("img", name="pasted.png")).to_be_visible()
    assert list(Attachment.objects.exclude(message=None).values_list("name", flat=True)) == ["pasted.png"]


def test_a_model_without_vision_gives_back_the_text_and_the_images(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    page.get_by_label("Attach files").set_input_files([png()])
    expect(page.locator("#attachment-tray").get_by_role("img", name="cat.png")).to_be_visible()
    send(page, "describe the cat", "echo")
    expect(page.locator("#composer-notice")).to_have_text(
        "echo cannot see images: choose a model that supports vision, or remove the images.")
    expect(page.get_by_label("Message")).to_have_value("describe the cat")
    expect(page.locator("#attachment-tray").get_by_role("img", name="cat.png")).to_be_visible()
    expect(page.locator(".message")).to_have_count(0)
