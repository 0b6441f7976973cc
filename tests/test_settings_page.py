"""/settings/: the member's own settings page, and the theme it sets on every page."""

from __future__ import annotations

import re

import pytest

from conversations.models import Preferences

pytestmark = pytest.mark.django_db


def html_theme(page: str) -> str:
    return re.search(r'<html lang="en" data-theme="(\w+)">', page).group(1)


def test_settings_needs_a_login(client, alice):
    response = client.get("/settings/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    response = client.post("/settings/", {"theme": "dark"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Preferences.objects.exists()


def test_the_theme_is_system_until_chosen(client, alice):
    client.force_login(alice)
    page = client.get("/settings/").content.decode()
    assert html_theme(page) == "system"
    assert re.search(r'<input type="radio" name="theme" value="system"[^>]* checked', page)
    assert 'href="/settings/keys/"' in page  # the API keys page is reached from here


def test_saving_a_theme_keeps_it_and_every_page_is_drawn_in_it(client, alice, conversation):
    client.force_login(alice)
    response = client.post("/settings/", {"theme": "dark"}, follow=True)
    assert response.redirect_chain == [("/settings/", 302)]
    page = response.content.decode()
    assert "Settings saved." in page and html_theme(page) == "dark"
    assert re.search(r'<input type="radio" name="theme" value="dark"[^>]* checked', page)
    assert Preferences.objects.get(user=alice).theme == "dark"
    for url in ["/", f"/c/{conversation.id}/", "/search/?q=x", "/settings/keys/"]:
        assert html_theme(client.get(url).content.decode()) == "dark", url

    client.post("/settings/", {"theme": "light"})
    assert Preferences.objects.get(user=alice).theme == "light"  # the same row, changed
    assert Preferences.objects.count() == 1


def test_the_theme_is_each_members_own(client, alice, bob):
    client.force_login(alice)
    client.post("/settings/", {"theme": "dark"})
    client.force_login(bob)
    assert html_theme(client.get("/settings/").content.decode()) == "system"
    client.post("/settings/", {"theme": "light"})
    assert dict(Preferences.objects.values_list("user__username", "theme")) == {"alice": "dark", "bob": "light"}


def test_an_unknown_theme_is_refused_with_the_form_and_changes_nothing(client, alice):
    client.force_login(alice)
    client.post("/settings/", {"theme": "dark"})
    response = client.post("/settings/", {"theme": "purple"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Preferences.objects.get(user=alice).theme == "dark"


def test_the_sidebar_links_to_settings(client, alice):
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert re.search(r'<div class="account">.*<a href="/settings/"', page, re.S)
