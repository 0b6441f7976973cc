"""Every page works under the Content-Security-Policy, in a real browser, with no violation."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from conversations.models import ApiKey, Conversation, Message, PromptTemplate, UsageRecord
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def watched(browser):
    """A page that records CSP violations (the DOM event), console errors, page errors and failed loads."""
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    context.add_init_script(LISTEN)
    page = context.new_page()
    page.problems = []
    # A failed load is reported by URL below (the console's message has none): only the
    # favicon, which the site does not have, may be missing.
    # htmx logs each message frame for a message the tab does not have yet: chat.js appends those
    # (every message frame is an upsert), so that one is expected.
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and not m.text.startswith("htmx:oobErrorNoTarget") and page.problems.append(f"console: {m.text}"))
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
            and page.problems.append(f"{r.status} {r.url}"))
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    yield page
    context.close()


def assert_clean(page) -> None:
    violations = page.evaluate("window.__violations || []")
    assert violations == [] and page.problems == [], (page.url, violations, page.problems)


def test_member_pages_work_under_the_policy(watched, site_server, alice, provider):
    page = watched
    page.goto(f"{site_server.url}/accounts/login/")
    assert_clean(page)
    log_in(page, site_server.url, "alice", "alice-password")
    assert_clean(page)

    # The chat: the websocket, a streamed reply rendered as Markdown, Regenerate.
    page.get_by_role("button", name="New chat").first.click()
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    page.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")
    page.get_by_label("Model").select_option("markdown")
    page.get_by_label("Message").fill("show me a table")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".message.assistant.complete")).to_be_visible()
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".message.assistant.complete")).to_have_count(1)
    assert_clean(page)

    # Search: the live dropdown (htmx) and the results page.
    page.get_by_label("Search conversations").press_sequentially("table")
    expect(page.locator("#search-results a.search-hit").first).to_be_visible()
    page.goto(f"{site_server.url}/search/?q=table")
    expect(page.locator("a.search-hit").first).to_be_visible()
    assert_clean(page)

    # API keys: create one, copy it (the Copy button is a script of the site's, not an inline handler).
    page.goto(f"{site_server.url}/settings/keys/")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New API key").input_value()
    page.wait_for_load_state()  # the page a form answered with: its deferred copy.js listens once it has run
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert_clean(page)

    # Delete asks first (a confirm from the site's script): dismissed keeps it, accepted deletes.
    conversation = Conversation.objects.get(owner=alice)
    page.goto(f"{site_server.url}{conversation.get_absolute_url()}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#conversation-title")).to_be_visible()
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{site_server.url}/")
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert_clean(page)


def test_admin_pages_work_under_the_policy(watched, site_server, charlie, alice, provider):
    page = watched
    # Something for the usage charts (SVG) and the template preview to show.
    UsageRecord.objects.create(request_id="r1", source="api", user=alice, model_name="echo", prompt_tokens=3,
                               completion_tokens=5, cost=Decimal("0.01"))
    template = PromptTemplate.objects.create(name="summarize", messages=[{"role": "system", "content": "In {{lang}}."}],
                                             variables={"lang": None})
    page.goto(f"{site_server.url}/admin/login/")
    page.get_by_label("Username").fill("charlie")
    page.get_by_label("Password").fill("charlie-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Run your team's AI access")).to_be_visible()
    assert_clean(page)

    for path in ["conversations/provider/", "conversations/model/", "conversations/apikey/",
                 "conversations/prompttemplate/", "conversations/usagerecord/", "conversations/auditlog/",
                 "auth/user/", "auth/group/", f"conversations/provider/{provider.pk}/change/",
                 "conversations/prompttemplate/add/", f"conversations/prompttemplate/{template.pk}/change/",
                 f"auth/user/{alice.pk}/change/", "auth/user/invite/"]:
        page.goto(f"{site_server.url}/admin/{path}")
        expect(page.locator("#content")).to_be_visible()
        assert_clean(page)
    page.goto(f"{site_server.url}/admin/conversations/usagerecord/")
    expect(page.get_by_role("img", name="Tokens per day")).to_be_visible()
    page.goto(f"{site_server.url}/admin/conversations/prompttemplate/{template.pk}/change/")
    expect(page.locator("mark")).to_have_text("{{lang}}")
    assert_clean(page)

    # A new key: the owner picked by autocomplete (select2), the key shown once, Copy works.
    page.goto(f"{site_server.url}/admin/conversations/apikey/add/")
    page.locator(".field-owner .select2-selection").click()
    page.locator(".select2-search__field").fill("ali")
    page.locator(".select2-results__option", has_text="alice").click()
    expect(page.locator(".field-owner .select2-selection__rendered")).to_contain_text("alice")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    secret = page.get_by_label("New API key").input_value()
    assert ApiKey.objects.get().matches(secret)
    page.wait_for_load_state()  # the page a form answered with: its deferred copy.js listens once it has run
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert_clean(page)

    # An invitation link, with its Copy button.
    page.goto(f"{site_server.url}/admin/auth/user/invite/")
    page.get_by_label("Username").fill("dana")
    page.get_by_role("button", name="Invite").click()
    link = page.get_by_label("Invitation link").input_value()
    page.wait_for_load_state()  # the page a form answered with: its deferred copy.js listens once it has run
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()  # the clipboard is written by then
    assert page.evaluate("navigator.clipboard.readText()") == link
    assert_clean(page)
