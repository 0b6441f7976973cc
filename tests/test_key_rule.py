"""Whether an API key is usable is one rule (conversations.models.gateway): every door says the same."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.utils import timezone

from conversations.api.auth import authenticate
from conversations.gateway.errors import GatewayError
from conversations.models import ApiKey
from conversations.models.gateway import KEY_STATES

pytestmark = pytest.mark.django_db

EXPECTED_CODE = {"revoked": "revoked_api_key", "expired": "expired_api_key", "owner inactive": "inactive_user"}


@pytest.fixture
def keys(alice, bob):
    """One key in each state: name -> (key, secret)."""
    made = {}
    for state in KEY_STATES:
        owner = bob if state == "owner inactive" else alice
        key, secret = ApiKey.issue(owner, name=f"key-{state.replace(' ', '-')}")
        made[state] = (key, secret)
    ApiKey.objects.filter(pk=made["revoked"][0].pk).update(revoked_at=timezone.now())
    ApiKey.objects.filter(pk=made["expired"][0].pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    type(bob).objects.filter(pk=bob.pk).update(is_active=False)
    return made


def test_the_model_and_the_queryset_agree_on_every_state(keys):
    for state, (key, _) in keys.items():
        key = ApiKey.objects.select_related("owner").get(pk=key.pk)
        assert key.state == state
        assert list(ApiKey.objects.in_state(state)) == [key]
    assert list(ApiKey.objects.active()) == [keys["active"][0]]


def test_the_api_refuses_each_unusable_key_with_its_reason(keys):
    assert async_to_sync(authenticate)(f"Bearer {keys['active'][1]}").pk == keys["active"][0].pk
    for state, code in EXPECTED_CODE.items():
        with pytest.raises(GatewayError) as error:
            async_to_sync(authenticate)(f"Bearer {keys[state][1]}")
        assert (error.value.status, error.value.code) == (401, code)


def test_the_admin_shows_and_filters_by_the_same_state(client, charlie, keys):
    client.force_login(charlie)
    for state, (key, _) in keys.items():
        page = client.get("/admin/conversations/apikey/", {"status": state}).content.decode()
        prefixes = set(re.findall(r"cs-[0-9a-f]{8}", page))
        assert prefixes == {key.prefix}, state
        assert f'<td class="field-status">{state}</td>' in page


def test_the_command_lists_the_same_state(keys):
    out = StringIO()
    call_command("apikeys", "list", stdout=out)
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()}
    for state, (key, _) in keys.items():
        assert f" {state} " in lines[key.prefix]


def test_the_members_page_shows_the_same_state(client, alice, keys):
    client.force_login(alice)
    page = client.get("/settings/keys/").content.decode()
    for state in ("active", "revoked", "expired"):
        row = re.search(rf"<tr>\s*<td><code>{keys[state][0].prefix}….*?</tr>", page, re.S).group(0)
        assert f"<td>{state}</td>" in row
