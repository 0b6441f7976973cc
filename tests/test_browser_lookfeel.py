"""Look and feel in a real browser: the phone drawer, the theme, Send/Stop, the growing message
box, Jump to latest, keyboard shortcuts, and axe-core's accessibility check of every page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message, Model, Preferences
from conversations.sharing import actions as sharing
from tests.conftest import BROWSER_TIMEOUT_MS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
WS_OPEN = "() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1"


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, has_touch=True)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def chat_with(owner, *pairs: tuple[str, str], model: str = "echo", title: str = "A chat") -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, model=Model.objects.get(name=model))
    for question, answer in pairs:
        conversation.messages.create(role="user", content=question, status="complete")
        conversation.messages.create(role="assistant", content=answer, status="complete", model=model)
    return conversation


def open_chat(page, base_url: str, conversation: Conversation) -> None:
    page.goto(f"{base_url}/c/{conversation.id}/")
    page.wait_for_function(WS_OPEN)


def background(page, selector: str = "body") -> str:
    return page.locator(selector).evaluate("el => getComputedStyle(el).backgroundColor")


def expect_background(page, colour: str) -> None:
    """The page's background becomes `colour` (a page being loaded has none yet)."""
    page.wait_for_function("colour => getComputedStyle(document.body).backgroundColor === colour", arg=colour)


def test_menu_opens_the_sidebar_as_a_drawer_on_a_phone(phone, site_server, alice, provider):
    page = phone
    chat_with(alice, ("first question", "first answer"), title="Trip to Lisbon")
    other = chat_with(alice, ("second question", "second answer"), title="Tax forms")
    log_in(page, site_server.url, "alice", "alice-password")

    menu = page.get_by_role("button", name="Menu")
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_have_attribute("aria-controls", "sidebar")
    expect(sidebar).to_be_hidden()
    expect(page.get_by_label("Search conversations")).to_be_hidden()

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(sidebar).to_be_visible()
    expect(sidebar.get_by_role("button", name="New chat")).to_be_visible()
    expect(sidebar.get_by_label("Search conversations")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Trip to Lisbon")).to_be_visible()
    expect(page.get_by_role("button", name="Close", exact=True)).to_be_focused()
    # The drawer slides in to fit the phone's screen, over the page.
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
    assert sidebar.bounding_box()["width"] <= PHONE["width"]

    # Esc closes it and gives focus back to Menu.
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(menu).to_be_focused()
    expect(menu).to_have_attribute("aria-expanded", "false")

    # The close button closes it.
    menu.click()
    page.get_by_role("button", name="Close", exact=True).click()
    expect(sidebar).to_be_hidden()

    # Choosing a conversation opens it, with the drawer closed.
    menu.click()
    sidebar.get_by_role("link", name="Tax forms").click()
    page.wait_for_url(f"{site_server.url}/c/{other.id}/")
    expect(page.locator(".message.user .body")).to_have_text("second question")
    expect(sidebar).to_be_hidden()
    expect(page.get_by_label("Message")).to_be_visible()

    # Search from the drawer.
    menu.click()
    sidebar.get_by_label("Search conversations").press_sequentially("Lisbon")
    expect(sidebar.locator("#search-results a.search-hit")).to_contain_text("Trip to Lisbon")

    # New chat from the drawer.
    page.keyboard.press("Escape")  # the search results
    sidebar.get_by_role("button", name="New chat").click()
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    assert page.url != f"{site_server.url}/c/{other.id}/"
    expect(page.locator(".message")).to_have_count(0)


def test_the_drawer_keeps_focus_inside_while_open(phone, site_server, alice, provider):
    page = phone
    log_in(page, site_server.url, "alice", "alice-password")
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("button", name="Close", exact=True)).to_be_focused()
    visited = set()
    for _ in range(12):  # more Tabs than the drawer has controls: focus never reaches the page behind
        page.keyboard.press("Tab")
        where = page.evaluate("""() => { const el = document.activeElement;
            return el === document.body ? 'browser' : el.closest('#sidebar') ? 'drawer:' + el.outerHTML : 'page:' + el.outerHTML; }""")
        assert not where.startswith("page:"), where
        visited.add(where)
    assert len(visited) >= 5  # Close, New chat, search, Settings, Log out (and the browser's own bar)


def test_the_theme_choice_persists_and_sets_the_colours(phone, site_server, alice, provider):
    page = phone
    page.emulate_media(color_scheme="light")
    log_in(page, site_server.url, "alice", "alice-password")
    light = background(page)
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(f"{site_server.url}/settings/")
    expect(page.get_by_role("radio", name="System")).to_be_checked()

    page.get_by_role("radio", name="Dark").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = background(page)
    assert dark != light and luminance(dark) < 0.1 < luminance(light), (dark, light)
    assert luminance(page.locator("h1").evaluate("el => getComputedStyle(el).color")) > 0.5

    page.reload()
    expect(page.get_by_role("radio", name="Dark")).to_be_checked()
    assert background(page) == dark
    page.goto(f"{site_server.url}/")  # every page, not just this one
    assert background(page) == dark
    assert Preferences.objects.get(user=alice).theme == "dark"

    # System follows the device again.
    page.goto(f"{site_server.url}/settings/")
    page.get_by_role("radio", name="System").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "system")  # the saved page, not the one before
    expect_background(page, light)
    page.emulate_media(color_scheme="dark")
    expect_background(page, dark)
    # and Light stays light on a dark device.
    page.get_by_role("radio", name="Light").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    expect_background(page, light)


def luminance(css_colour: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css_colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_send_turns_into_stop_while_a_reply_is_written(phone, site_server, alice, provider):
    page = phone
    log_in(page, site_server.url, "alice", "alice-password")
    open_chat(page, site_server.url, chat_with(alice, model="long"))
    send, stop = page.get_by_role("button", name="Send"), page.get_by_role("button", name="Stop")
    expect(send).to_be_visible()
    expect(stop).to_have_count(0)  # not even to a screen reader

    page.get_by_label("Message").fill("write a lot")
    send.click()
    expect(page.locator(".message.assistant.streaming")).to_contain_text("word5")
    expect(stop).to_be_visible()
    expect(send).to_have_count(0)

    stop.click()
    expect(page.locator(".message.assistant.cancelled")).to_be_visible()
    expect(send).to_be_visible()
    expect(stop).to_have_count(0)


def test_the_message_box_grows_with_its_text(page, site_server, alice, provider):
    log_in(page, site_server.url, "alice", "alice-password")
    open_chat(page, site_server.url, chat_with(alice))
    box = page.get_by_label("Message")
    empty = box.bounding_box()["height"]
    box.fill("\n".join(f"line {i}" for i in range(8)))
    grown = box.bounding_box()["height"]
    assert grown > empty * 1.5, (empty, grown)
    box.fill("\n".join(f"line {i}" for i in range(200)))
    assert box.bounding_box()["height"] <= page.viewport_size["height"] * 0.45  # then it scrolls
    box.fill("")
    assert box.bounding_box()["height"] == empty


def test_jump_to_latest_appears_when_scrolled_up(page, site_server, alice, provider):
    conversation = chat_with(alice, *[(f"question {i}", "answer\n\n" * 10) for i in range(12)])
    log_in(page, site_server.url, "alice", "alice-password")
    open_chat(page, site_server.url, conversation)
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_hidden()  # opened at the latest
    page.locator("#messages").evaluate("el => el.scrollTop = 0")
    expect(jump).to_be_visible()
    jump.click()
    # At the bottom: the last reply in view (its question may be above it, on a short window).
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    expect(jump).to_be_hidden()
    expect(page.get_by_label("Message")).to_be_focused()


def test_keyboard_shortcuts(phone, site_server, alice, provider):
    page = phone
    conversation = chat_with(alice, ("the last question", "an answer"), model="long")
    log_in(page, site_server.url, "alice", "alice-password")
    open_chat(page, site_server.url, conversation)

    # Ctrl+K focuses search (on a phone, opening the drawer that holds it).
    page.keyboard.press("Control+k")
    expect(page.get_by_label("Search conversations")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()

    # Esc stops a reply being written.
    box = page.get_by_label("Message")
    box.fill("go on")
    box.press("Enter")
    expect(page.locator(".message.assistant.streaming")).to_contain_text("word5")
    page.keyboard.press("Escape")
    expect(page.locator(".message.assistant.cancelled")).to_be_visible()
    reply = Message.objects.filter(conversation=conversation, role="assistant").latest("id")
    assert reply.status == "cancelled" and "word399" not in reply.content

    # Up in an empty box edits the last question (its Edit button opens the box in place).
    box.fill("not empty")
    box.press("ArrowUp")
    expect(page.get_by_role("textbox", name="Edit message")).to_have_count(0)
    box.fill("")
    box.press("ArrowUp")
    expect(page.locator("#messages .message.user").last.get_by_role("textbox", name="Edit message")).to_be_visible()
    expect(page.get_by_role("textbox", name="Edit message")).to_have_count(1)

    # Ctrl+Shift+O starts a new chat.
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(lambda url: re.search(r"/c/\d+/$", url) and not url.endswith(f"/c/{conversation.id}/"))
    assert Conversation.objects.filter(owner=alice).count() == 2


# -- Accessibility: axe-core (bundled with axe-playwright-python, no network) on every page


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page).response
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
            f" {[n.get('failureSummary', '') for n in v['nodes']][:2]}"
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.timeout(300)  # about twenty axe runs (every page, and on a phone with the drawer open) on a loaded machine
@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_serious_accessibility_violation_on_any_page(browser, site_server, alice, bob, provider, theme, viewport):
    Preferences.objects.create(user=alice, theme=theme)
    conversation = chat_with(alice, *[(f"question {i}", "answer\n\n" * 6) for i in range(6)], ("show me a table", "x"),
                             model="markdown", title="Tables")
    from tests.upstream import MARKDOWN_REPLY

    reply = conversation.messages.filter(role="assistant").latest("id")
    reply.content = MARKDOWN_REPLY + "\n\nSee `code` and **bold**, a [link](https://example.com)."
    reply.reasoning = "Thinking it over."
    reply.save()
    conversation.messages.create(role="user", content="and another", status="complete")
    conversation.messages.create(role="assistant", content="Echo: and", status="error", error="The upstream failed.", model="echo")
    put_away = chat_with(alice, ("an old question", "an old answer"), title="Put away")
    Conversation.objects.filter(pk=put_away.pk).update(archived=True)
    # Shared with bob: what he sees of it, and his Shared with me.
    Preferences.objects.create(user=bob, theme=theme)
    sharing.share(conversation, everyone=False, users=[bob], groups=[])
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    log_in(page, site_server.url, "alice", "alice-password")
    pages = {
        "index": "/",
        "chat": f"/c/{conversation.id}/",
        "search": "/search/?q=table",
        "settings": "/settings/",
        "api keys": "/settings/keys/",
        "archived": "/archived/",
    }
    found = {}

    def visit(page, name: str, url: str) -> None:
        page.goto(site_server.url + url)
        expect(page.locator("html")).to_have_attribute("data-theme", theme)
        if "chat" in name:
            page.wait_for_function(WS_OPEN)
            page.locator("#messages").evaluate("el => el.scrollTop = 0")
            expect(page.get_by_role("button", name="Jump to latest")).to_be_visible()
        if name == "search":
            expect(page.locator("a.search-hit").first).to_be_visible()
        found[name] = serious_violations(page)
        if viewport is PHONE:
            page.get_by_role("button", name="Menu").click()
            page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
            found[f"{name}, drawer open"] = serious_violations(page)

    for name, url in pages.items():
        visit(page, name, url)
    # The Share panel, open.
    page.goto(f"{site_server.url}/c/{conversation.id}/")
    page.locator("#chat-header").get_by_role("button", name="Share").click()
    expect(page.get_by_label("Everyone in the team")).to_be_visible()
    found["share panel"] = serious_violations(page)
    reader = context.browser.new_context(viewport=viewport)
    reader.set_default_timeout(BROWSER_TIMEOUT_MS)
    bob_page = reader.new_page()
    log_in(bob_page, site_server.url, "bob", "bob-password")
    visit(bob_page, "shared with me", "/shared/")
    visit(bob_page, "shared chat, as its reader", f"/c/{conversation.id}/")
    reader.close()
    # The sidebar's search as you type, open.
    page.goto(site_server.url + "/")
    if viewport is PHONE:
        page.get_by_role("button", name="Menu").click()
    page.get_by_label("Search conversations").press_sequentially("table")
    expect(page.locator("#search-results a.search-hit").first).to_be_visible()
    found["search as you type"] = serious_violations(page)
    context.close()
    assert {name: v for name, v in found.items() if v} == {}
