"""/settings/: the member's own settings page, and the theme it sets on every page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group

from conversations.models import Conversation, Model, Preferences

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


def test_a_new_chat_starts_with_my_default_model_and_system_prompt(client, alice, bob, provider):
    client.force_login(alice)
    response = client.post("/settings/", {"theme": "system", "default_model": Model.objects.get(name="slow").pk,
                                          "system_prompt": "Answer in one sentence."})
    assert response.status_code == 302
    client.post("/c/new/")
    mine = Conversation.objects.get(owner=alice)
    assert (mine.model.name, mine.system_prompt) == ("slow", "Answer in one sentence.")

    # An untouched new chat, reused, takes the defaults as they are now.
    client.post("/settings/", {"theme": "system", "default_model": "", "system_prompt": ""})
    client.post("/c/new/")
    mine.refresh_from_db()
    assert Conversation.objects.filter(owner=alice).count() == 1
    assert mine.system_prompt == "" and mine.model == Model.objects.usable_by(alice).first()

    # bob's new chats are his own business.
    client.force_login(bob)
    client.post("/c/new/")
    assert Conversation.objects.get(owner=bob).system_prompt == ""


def test_a_model_i_may_not_use_is_neither_offered_nor_accepted(client, alice, provider):
    secret = Model.objects.create(provider=provider, upstream_id="team-only", name="team-only")
    secret.groups.add(Group.objects.create(name="research"))
    client.force_login(alice)
    page = client.get("/settings/").content.decode()
    assert ">slow<" in page and "team-only" not in page
    response = client.post("/settings/", {"theme": "system", "default_model": secret.pk, "system_prompt": ""})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not Preferences.objects.exists()


def test_a_default_model_closed_to_me_later_falls_back(client, alice, provider):
    slow = Model.objects.get(name="slow")
    Preferences.objects.create(user=alice, default_model=slow)
    slow.enabled = False
    slow.save(update_fields=["enabled"])
    client.force_login(alice)
    client.post("/c/new/")
    assert Conversation.objects.get(owner=alice).model == Model.objects.usable_by(alice).first() != slow


@pytest.mark.django_db(transaction=True)
async def test_the_default_system_prompt_goes_upstream(alice, provider, upstream):
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from tests.wsclient import Tab

    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    await client.post("/settings/", {"theme": "system", "default_model": (await Model.objects.aget(name="echo")).pk,
                                     "system_prompt": "You are terse."})
    response = await client.post("/c/new/")
    conversation_id = int(response["Location"].strip("/").split("/")[-1])
    tab = Tab(alice, conversation_id)
    assert await tab.connect()
    await tab.send(message="hello")
    await tab.read_until(lambda f: "Echo: hello" in f and "complete" in f)
    sent = upstream.requests_for("echo")[-1]["body"]
    assert sent["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello"}]
    await tab.close()
