"""Providers: the `providers` command, and their API keys encrypted at rest."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from conversations import encryption
from conversations.models import Model, Provider

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("providers", *args, stdout=out)
    return out.getvalue()


def test_add_reads_the_key_from_the_environment_and_imports_the_models(upstream, monkeypatch):
    monkeypatch.setenv("LOOP_KEY", "sk-test-abcdef123456")
    out = run("add", "loop", "--base-url", upstream.base_url, "--api-key-env", "LOOP_KEY")
    provider = Provider.objects.get(name="loop")
    assert provider.api_key == "sk-test-abcdef123456"
    assert set(provider.models.values_list("name", flat=True)) >= {"echo", "slow"}
    assert "Added provider loop" in out and "echo" in out
    models_request = next(r for r in upstream.requests if r["path"] == "/v1/models")
    assert models_request["headers"]["authorization"] == "Bearer sk-test-abcdef123456"


def test_the_stored_key_is_never_the_key(upstream, monkeypatch):
    monkeypatch.setenv("LOOP_KEY", "sk-test-plaintext-secret")
    run("add", "loop", "--base-url", upstream.base_url, "--api-key-env", "LOOP_KEY", "--no-sync")
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted FROM conversations_provider")
        (raw,) = cursor.fetchone()
    assert "plaintext-secret" not in raw and raw
    assert encryption.decrypt(raw) == "sk-test-plaintext-secret"


def test_sync_adds_only_new_models_and_names_clashes_by_provider(upstream, provider):
    Model.objects.filter(name="echo").delete()
    out = run("sync", "loop")
    assert "1 new models" in out
    other = Provider.objects.create(name="other", base_url=upstream.base_url)
    other.sync_models()
    assert Model.objects.filter(provider=other, name="other/echo").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["add", "x", "--base-url", "not a url"], "Use an http:// or https:// URL"),
        (["add", "x", "--base-url", "ftp://files.example.com/v1"], "Use an http:// or https:// URL"),
        (["add", "x", "--base-url", "file:///etc/passwd"], "Use an http:// or https:// URL"),
        (["add", "x", "--base-url", "https://user:sk-secret@api.example.com/v1"], "No credentials in the URL"),
        (["add", "x", "--base-url", "https://sk-secret@api.example.com/v1"], "No credentials in the URL"),
        (["add", "x", "--base-url", "http://127.0.0.1:1/v1"], "Could not list the models of x"),
        (["add", "x", "--base-url", "http://127.0.0.1:1/v1", "--api-key-env", "NO_SUCH_VAR_HERE"], "NO_SUCH_VAR_HERE is not set"),
        (["sync", "nope"], "No provider named 'nope'"),
    ],
)
def test_bad_input_gets_a_clear_error(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(*args)
    assert not Provider.objects.filter(name="x").exists()


def test_a_duplicate_name_is_refused(provider, upstream):
    with pytest.raises(CommandError, match="exists already"):
        run("add", "loop", "--base-url", upstream.base_url)


def test_list_shows_providers_with_a_masked_key(provider):
    out = run("list")
    assert "loop" in out and "sk-…1234" in out and "sk-upstream-secret-1234" not in out
    assert "  echo" in out


def test_a_key_from_an_older_encryption_key_still_opens_after_rotation(settings):
    from cryptography.fernet import Fernet

    old = settings.ENCRYPTION_KEYS[0]
    token = encryption.encrypt("sk-rotate-me")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    encryption._fernet.cache_clear()
    try:
        assert encryption.decrypt(token) == "sk-rotate-me"
        rotated = encryption.rotate(token)
        settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]
        encryption._fernet.cache_clear()
        assert encryption.decrypt(rotated) == "sk-rotate-me"
        with pytest.raises(encryption.DecryptionError):
            encryption.decrypt(token)
    finally:
        encryption._fernet.cache_clear()


def test_a_stored_key_the_configured_keys_cannot_open_fails_the_start_up_check(provider, settings):
    from cryptography.fernet import Fernet

    from conversations.checks import stored_secrets_open_with_the_keys

    assert stored_secrets_open_with_the_keys(databases=["default"]) == []
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    encryption._fernet.cache_clear()
    try:
        errors = stored_secrets_open_with_the_keys(databases=["default"])
    finally:
        encryption._fernet.cache_clear()
    assert [e.id for e in errors] == ["chatsite.E002"]
    assert "'loop'" in errors[0].msg
