"""The admin panel: every page renders, every action works, secrets are never shown twice."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from conversations import encryption
from conversations.api.auth import authenticate
from conversations.gateway.errors import GatewayError
from conversations.models import ApiKey, AuditLog, Model, PromptTemplate, Provider, UsageRecord
from tests.upstream import MODELS

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, charlie):
    client.force_login(charlie)
    return client


def test_every_admin_page_renders(admin_client, alice, provider):
    ApiKey.issue(alice, name="k")
    PromptTemplate.objects.create(name="t", messages=[{"role": "system", "content": "Hi {{who}}"}], variables={"who": "you"})
    UsageRecord.objects.create(request_id="r1", source="api", user=alice, model_name="echo", prompt_tokens=3,
                               completion_tokens=4, cost=Decimal("0.01"))
    AuditLog.objects.create(action="create", object_type="apikey", object_repr="k")
    index = admin_client.get("/admin/")
    assert index.status_code == 200
    for section in ("Gateway", "Usage", "People"):
        assert section in index.content.decode()
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        assert admin_client.get(base).status_code == 200, base
        if model_admin.has_add_permission(admin_client.get(base).wsgi_request):
            assert admin_client.get(base + "add/").status_code == 200, base
        obj = model._default_manager.first()
        if obj is not None:
            assert admin_client.get(f"{base}{obj.pk}/change/").status_code == 200, base
    assert admin_client.get("/admin/auth/user/invite/").status_code == 200


def test_a_provider_key_is_write_only_encrypted_and_never_shown(admin_client, upstream):
    secret = "sk-live-do-not-show-9876"
    response = admin_client.post("/admin/conversations/provider/add/", {
        "name": "openai", "base_url": upstream.base_url, "enabled": "on", "timeout": "60", "api_key": secret})
    assert response.status_code == 302
    provider = Provider.objects.get(name="openai")
    assert provider.api_key == secret
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM conversations_provider")
        assert secret not in repr(cursor.fetchall())
    pages = [admin_client.get("/admin/conversations/provider/").content.decode(),
             admin_client.get(f"/admin/conversations/provider/{provider.pk}/change/").content.decode()]
    assert all(secret not in page for page in pages)
    assert "sk-…9876" in pages[0]
    # Saving with the key field blank keeps the key.
    admin_client.post(f"/admin/conversations/provider/{provider.pk}/change/", {
        "name": "openai", "base_url": upstream.base_url, "enabled": "on", "timeout": "30", "api_key": ""})
    provider.refresh_from_db()
    assert provider.api_key == secret and provider.timeout == 30
    assert AuditLog.objects.filter(object_type="provider", action="change").exists()


def test_provider_actions_test_the_connection_and_sync_models(admin_client, upstream):
    provider = Provider.objects.create(name="loop", base_url=upstream.base_url)
    down = Provider.objects.create(name="down", base_url="http://127.0.0.1:1/v1")
    url = "/admin/conversations/provider/"
    page = admin_client.post(url, {"action": "test_connection", "_selected_action": [provider.pk, down.pk]},
                             follow=True).content.decode()
    assert re.search(r"Loop: OK, \d+ models, \d+ ms", page)  # the admin capitalizes messages
    assert "Down: failed: " in page
    page = admin_client.post(url, {"action": "sync_models", "_selected_action": [provider.pk]}, follow=True).content.decode()
    assert f"Loop: {len(MODELS)} new models" in page
    assert Model.objects.filter(provider=provider, name="echo").exists()


def test_models_get_prices_and_can_be_disabled_from_the_list(admin_client, provider):
    echo = Model.objects.get(name="echo")
    admin_client.post("/admin/conversations/model/", {"action": "disable", "_selected_action": [echo.pk]})
    echo.refresh_from_db()
    assert not echo.enabled
    response = admin_client.post(f"/admin/conversations/model/{echo.pk}/change/", {
        "provider": provider.pk, "upstream_id": "echo", "name": "echo", "display_name": "Echo", "enabled": "on",
        "context_window": "8192", "input_price": "0.15", "output_price": "0.60"})
    assert response.status_code == 302
    echo.refresh_from_db()
    assert (echo.enabled, echo.input_price, echo.output_price, echo.display_name) == (True, Decimal("0.15"), Decimal("0.60"), "Echo")


def test_a_new_api_key_is_shown_once_then_revoked_and_rotated(admin_client, alice, provider):
    response = admin_client.post("/admin/conversations/apikey/add/", {
        "owner": alice.pk, "name": "ci", "allowed_models": [Model.objects.get(name="echo").pk], "rpm": "60",
        "budget_total": "10"}, follow=True)
    page = response.content.decode()
    secret = re.search(r'value="(cs-[0-9a-f]{8}_[^"]+)"', page).group(1)
    key = ApiKey.objects.get()
    assert key.matches(secret) and key.rpm == 60 and key.budget_total == 10
    assert "Copy" in page
    assert secret not in admin_client.get(response.redirect_chain[-1][0]).content.decode()  # once
    assert secret not in admin_client.get(f"/admin/conversations/apikey/{key.pk}/change/").content.decode()
    assert async_to_sync(authenticate)(f"Bearer {secret}").pk == key.pk

    page = admin_client.post("/admin/conversations/apikey/", {"action": "rotate", "_selected_action": [key.pk]},
                             follow=True).content.decode()
    rotated = re.search(r'value="(cs-[0-9a-f]{8}_[^"]+)"', page).group(1)
    assert rotated != secret and async_to_sync(authenticate)(f"Bearer {rotated}").pk == key.pk
    with pytest.raises(GatewayError):
        async_to_sync(authenticate)(f"Bearer {secret}")

    admin_client.post("/admin/conversations/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    with pytest.raises(GatewayError) as error:
        async_to_sync(authenticate)(f"Bearer {rotated}")
    assert error.value.code == "revoked_api_key"
    assert list(AuditLog.objects.filter(object_type="apikey").order_by("id").values_list("action", flat=True)) == [
        "create", "rotate", "revoke"]


def test_a_template_declares_its_slots_and_previews_them(admin_client):
    data = {"name": "summarize", "description": "", "messages": '[{"role": "system", "content": "Summarize in {{lang}} for {{who}}."}]',
            "variables": '{"lang": "English"}'}
    page = admin_client.post("/admin/conversations/prompttemplate/add/", data).content.decode()
    assert "Declare the slots the messages use: who." in page
    response = admin_client.post("/admin/conversations/prompttemplate/add/", {**data, "variables": '{"lang": "English", "who": null}'})
    assert response.status_code == 302
    template = PromptTemplate.objects.get()
    page = admin_client.get(f"/admin/conversations/prompttemplate/{template.pk}/change/").content.decode()
    assert "Summarize in English for <mark>{{who}}</mark>." in page


def test_inviting_gives_a_one_time_set_password_link(admin_client, client):
    page = admin_client.post("/admin/auth/user/invite/", {"username": "dana", "email": "dana@example.com"}).content.decode()
    link = re.search(r'value="(http://testserver/accounts/reset/[^"]+)"', page).group(1)
    dana = get_user_model().objects.get(username="dana")
    assert not dana.has_usable_password() and not dana.is_staff
    client.logout()
    form_page = client.get(link, follow=True)
    response = client.post(form_page.redirect_chain[-1][0],
                           {"new_password1": "a-long-new-password", "new_password2": "a-long-new-password"})
    assert response.status_code == 302
    assert client.login(username="dana", password="a-long-new-password")
    client.logout()
    assert client.get(link, follow=True).context["validlink"] is False  # used once


def test_deactivating_and_roles(admin_client, alice, charlie):
    url = "/admin/auth/user/"
    admin_client.post(url, {"action": "make_admin", "_selected_action": [alice.pk]})
    alice.refresh_from_db()
    assert alice.is_superuser and alice.is_staff
    admin_client.post(url, {"action": "deactivate", "_selected_action": [alice.pk, charlie.pk]})
    alice.refresh_from_db()
    charlie.refresh_from_db()
    assert not alice.is_active and charlie.is_active  # never yourself


def test_usage_shows_totals_and_a_chart_filtered_by_user(admin_client, alice, bob):
    for user, tokens in ((alice, 10), (alice, 20), (bob, 400)):
        UsageRecord.objects.create(request_id="r", source="chat", user=user, model_name="echo",
                                   prompt_tokens=tokens, completion_tokens=1, cost=Decimal("0.5"))
    page = admin_client.get(f"/admin/conversations/usagerecord/?user__id__exact={alice.pk}").content.decode()
    assert "<strong>2</strong> requests" in page and "<strong>30</strong> prompt" in page
    assert 'aria-label="Tokens per day"' in page and "<rect" in page
    assert "<strong>1.0000</strong>" in page


def test_a_member_cannot_open_the_admin(client, alice):
    client.force_login(alice)
    for url in ("/admin/", "/admin/conversations/apikey/", "/admin/conversations/usagerecord/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_rotate_encryption_re_encrypts_every_stored_key(settings, provider):
    old_token = Provider.objects.get().api_key_encrypted
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]
    encryption._fernet.cache_clear()
    try:
        out = StringIO()
        call_command("rotate_encryption", stdout=out)
        assert "Re-encrypted 1 provider keys" in out.getvalue()
        settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]  # the old key can go now
        encryption._fernet.cache_clear()
        provider = Provider.objects.get()
        assert provider.api_key_encrypted != old_token and provider.api_key == "sk-upstream-secret-1234"
    finally:
        encryption._fernet.cache_clear()


def test_users_invite_command_prints_a_link(db):
    out = StringIO()
    call_command("users", "invite", "erin", "--admin", stdout=out)
    assert re.search(r"http://127.0.0.1:8000/accounts/reset/\w+/[\w-]+/", out.getvalue())
    assert get_user_model().objects.get(username="erin").is_superuser
