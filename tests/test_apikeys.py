"""`manage.py apikeys`: keys shown once, stored hashed, revocable by key or prefix."""

from __future__ import annotations

from io import StringIO

import httpx2 as httpx
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from conversations.models import ApiKey, AuditLog

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> str:
    out = StringIO()
    call_command("apikeys", *args, stdout=out)
    return out.getvalue()


def test_create_prints_the_key_once_on_its_last_line_and_stores_only_a_hash(alice, provider, api_server):
    out = run("create", "--user", "alice", "--name", "ci", "--models", "echo,slow", "--default-model", "echo",
              "--expires", "2099-12-31", "--rpm", "60", "--tpm", "10000", "--budget", "25.50")
    secret = out.strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert secret.startswith(key.prefix + "_") and key.matches(secret)
    assert (key.name, key.rpm, key.tpm, str(key.budget_total), key.default_model.name) == ("ci", 60, 10000, "25.5000", "echo")
    assert sorted(m.name for m in key.allowed_models.all()) == ["echo", "slow"]
    assert key.expires_at.year == 2099
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM conversations_apikey")
        assert secret not in repr(cursor.fetchall())
    # It works on /v1, with its default model.
    response = httpx.post(f"{api_server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                          json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.json()["model"] == "echo"
    assert secret not in run("list") and key.prefix in run("list")
    assert AuditLog.objects.filter(action="create", object_type="apikey").exists()


@pytest.mark.parametrize("by_prefix", [True, False])
def test_revoke_by_key_or_prefix_stops_it_working(alice, provider, api_server, by_prefix):
    secret = run("create", "--user", "alice").strip().splitlines()[-1]
    key = ApiKey.objects.get()
    out = run("revoke", key.prefix if by_prefix else secret)
    assert "Revoked" in out
    key.refresh_from_db()
    assert key.revoked_at is not None and "revoked" in run("list")
    response = httpx.get(f"{api_server.url}/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "revoked_api_key"


@pytest.mark.parametrize("args, message", [
    (["create", "--user", "nobody"], "No user named 'nobody'"),
    (["create", "--user", "alice", "--models", "echo,nope"], "No model named 'nope'"),
    (["create", "--user", "alice", "--expires", "soon"], "is not a date"),
    (["create", "--user", "alice", "--expires", "2001-01-01"], "in the past"),
    (["create", "--user", "alice", "--budget", "lots"], "is not an amount"),
    (["create", "--user", "alice", "--rpm", "0"], "at least 1"),
    (["revoke", "cs-00000000"], "No such API key"),
])
def test_bad_input_gets_a_clear_error(alice, provider, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not ApiKey.objects.exists()
