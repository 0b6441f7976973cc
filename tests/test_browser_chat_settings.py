"""Chat settings in a real browser: the panel, a bad value explained in place, the next reply
sent with the settings (as the loopback upstream received it)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Model, PromptTemplate
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_chat(page, site_server, conversation) -> None:
    log_in(page, site_server.url, "alice", "alice-password")
    page.goto(f"{site_server.url}/c/{conversation.id}/")
    page.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")


def test_settings_are_saved_in_place_and_sent_with_the_next_reply(page, site_server, alice, provider, upstream):
    PromptTemplate.objects.create(name="pirate", messages=[{"role": "system", "content": "Talk like a {{who}}."}],
                                  variables={"who": "pirate"})
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    open_chat(page, site_server, conversation)
    panel = page.locator("#chat-settings")
    expect(panel.get_by_label("System prompt")).to_be_hidden()
    page.get_by_text("Chat settings", exact=True).click()
    expect(panel.get_by_label("Reasoning effort")).to_have_count(0)  # echo does not reason

    # A bad value: /v1's message, in place; what was typed stays; nothing is saved.
    panel.get_by_label("System prompt").fill("Answer in French.")
    panel.get_by_label("Temperature").fill("5")
    panel.get_by_label("Top P").fill("0.5")
    panel.get_by_label("Preset").select_option("pirate")
    expect(panel.get_by_label("who")).to_have_value("pirate")  # the slot, its default filled in
    panel.get_by_label("who").fill("parrot")
    panel.get_by_role("button", name="Save settings").click()
    expect(panel.locator("#cs-temperature-error")).to_have_text("Invalid 'temperature': must be between 0 and 2.")
    expect(panel.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")
    expect(panel.get_by_label("System prompt")).to_have_value("Answer in French.")
    expect(panel.get_by_label("Top P")).to_have_value("0.5")
    expect(panel.get_by_label("who")).to_have_value("parrot")
    assert Conversation.objects.get(pk=conversation.pk).system_prompt == ""

    panel.get_by_label("Temperature").fill("0.4")
    panel.get_by_role("button", name="Save settings").click()
    expect(panel.get_by_role("status")).to_have_text("Saved")
    expect(panel.locator("#cs-temperature-error")).to_have_count(0)

    page.get_by_label("Message").fill("bonjour")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".message.assistant.complete")).to_contain_text("Echo: bonjour")
    body = upstream.requests_for("echo")[-1]["body"]
    assert (body["temperature"], body["top_p"]) == (0.4, 0.5)
    assert body["messages"] == [{"role": "system", "content": "Talk like a parrot."},
                                {"role": "system", "content": "Answer in French."},
                                {"role": "user", "content": "bonjour"}]

    # After a reload the panel holds what was saved.
    page.reload()
    page.get_by_text("Chat settings", exact=True).click()
    expect(panel.get_by_label("Temperature")).to_have_value("0.4")
    expect(panel.get_by_label("Preset")).to_have_value("pirate")
    expect(panel.get_by_label("who")).to_have_value("parrot")


def test_reasoning_effort_appears_when_a_reasoning_model_is_picked(page, site_server, alice, provider, upstream):
    Model.objects.filter(name="reasoner").update(supports_reasoning=True)
    conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
    open_chat(page, site_server, conversation)
    page.get_by_text("Chat settings", exact=True).click()
    panel = page.locator("#chat-settings")
    expect(panel.get_by_label("Reasoning effort")).to_have_count(0)
    page.get_by_label("Model").select_option("reasoner")
    panel.get_by_label("Reasoning effort").select_option("high")
    panel.get_by_role("button", name="Save settings").click()
    expect(panel.get_by_role("status")).to_have_text("Saved")
    page.get_by_label("Message").fill("think hard")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".message.assistant.complete")).to_be_visible()
    assert upstream.requests_for("reasoner")[-1]["body"]["reasoning_effort"] == "high"
