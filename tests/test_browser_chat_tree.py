"""Edit and branches, Copy, Copy code and math in a real browser (chromium) against a real server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tests.conftest import BROWSER_TIMEOUT_MS
from tests.test_browser import open_new_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def clipboard_page(browser):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def wait_for_socket(page) -> None:
    page.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")


def test_edit_saves_a_new_version_and_the_chosen_one_survives_a_reload(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    send(page, "the first question", "echo")
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: the first question")
    send(page, "a follow-up", "echo")
    expect(page.locator(".message.assistant.complete").nth(1)).to_contain_text("Echo: a follow-up")

    question = page.locator(".message.user").first
    question.get_by_role("button", name="Edit").click()
    box = question.get_by_label("Edit message")
    expect(box).to_have_value("the first question")
    box.fill("a different question")
    question.get_by_role("button", name="Cancel").click()
    expect(question.get_by_label("Edit message")).to_be_hidden()
    expect(question.locator(".body")).to_have_text("the first question")

    question.get_by_role("button", name="Edit").click()
    question.get_by_label("Edit message").fill("a better question")
    question.get_by_role("button", name="Save and send").click()
    # The new version and a new reply under it; the follow-up belongs to the other branch.
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: a better question")
    edited = page.locator(".message.user").first
    expect(edited.locator(".version-count")).to_have_text("2 / 2")

    edited.get_by_role("button", name="Previous version").click()
    expect(page.locator(".message.user").first.locator(".version-count")).to_have_text("1 / 2")
    expect(page.locator(".message.user").first.locator(".body")).to_have_text("the first question")
    expect(page.locator(".message.assistant").nth(1)).to_contain_text("Echo: a follow-up")

    page.reload()
    wait_for_socket(page)
    expect(page.locator(".message.user").first.locator(".version-count")).to_have_text("1 / 2")
    expect(page.locator(".message")).to_have_count(4)
    page.locator(".message.user").first.get_by_role("button", name="Next version").click()
    expect(page.locator(".message.user").first.locator(".body")).to_have_text("a better question")
    expect(page.locator(".message")).to_have_count(2)
    page.reload()
    expect(page.locator(".message.user").first.locator(".version-count")).to_have_text("2 / 2")
    conversation = Conversation.objects.get(owner__username="alice")
    assert Message.objects.filter(conversation=conversation).count() == 6  # nothing lost


def test_copy_puts_the_raw_markdown_on_the_clipboard_and_copy_code_the_code(clipboard_page, site_server, alice, provider):
    page = clipboard_page
    open_new_chat(page, site_server)
    send(page, "show me a table", "markdown")
    reply = page.locator(".message.assistant.complete")
    expect(reply.locator("table")).to_be_visible()
    raw = Message.objects.get(role="assistant").content
    reply.get_by_role("button", name="Copy", exact=True).click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == raw
    assert "|" in raw and "```" in raw  # the Markdown itself, not the page's text

    code = reply.locator(".code-block")
    code.get_by_role("button", name="Copy code").click()
    expect(code.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == code.locator("code").inner_text()
    assert "```" not in page.evaluate("navigator.clipboard.readText()")


def test_math_is_rendered_as_mathml(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    send(page, "so $x^2 + y^2 = z^2$ right", "echo")
    reply = page.locator(".message.assistant.complete")
    expect(reply.locator("math msup").first).to_be_attached()
    assert reply.locator("math").evaluate("el => el.namespaceURI") == "http://www.w3.org/1998/Math/MathML"
    expect(reply.locator(".body")).not_to_contain_text("$x^2")


def test_a_message_being_edited_keeps_what_was_typed_when_the_branch_is_sent_again(page, site_server, alice, provider):
    open_new_chat(page, site_server)
    send(page, "a question", "echo")
    reply = page.locator(".message.assistant.complete")
    expect(reply).to_contain_text("Echo: a question")
    question = page.locator(".message.user")
    question.get_by_role("button", name="Edit").click()
    question.get_by_label("Edit message").fill("half-typed new wording")
    reply.get_by_role("button", name="Regenerate").click()  # the branch is sent whole
    expect(page.locator(".message.assistant .version-count")).to_have_text("2 / 2")
    expect(page.locator(".message.user").get_by_label("Edit message")).to_have_value("half-typed new wording")
