"""Members: their own keys and usage, their limits over chat and API, presets in the chat."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx2 as httpx
import pytest

from conversations.models import ApiKey, Message, Model, Profile, PromptTemplate, UsageRecord
from tests.wsclient import Tab


@pytest.mark.django_db
def test_members_manage_only_their_own_keys(client, alice, bob):
    bobs_key, _ = ApiKey.issue(bob, name="bob's laptop")
    client.force_login(alice)
    response = client.post("/settings/keys/", {"name": "my script"})
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    secret = re.search(r'value="(cs-[0-9a-f]{8}_[^"]+)"', page).group(1)
    key = ApiKey.objects.get(owner=alice)
    assert key.matches(secret) and key.name == "my script"
    listing = client.get("/settings/keys/").content.decode()
    assert secret not in listing and key.prefix in listing  # shown once
    assert bobs_key.prefix not in listing and "bob&#x27;s laptop" not in listing
    assert client.post(f"/settings/keys/{bobs_key.pk}/revoke/").status_code == 404
    bobs_key.refresh_from_db()
    assert bobs_key.revoked_at is None
    client.post(f"/settings/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.django_db
def test_an_admin_can_turn_off_creating_keys(client, alice):
    Profile.objects.create(user=alice, can_create_api_keys=False)
    client.force_login(alice)
    page = client.post("/settings/keys/", {"name": "x"}).content.decode()
    assert "turned off creating API keys" in page and not ApiKey.objects.exists()


@pytest.mark.django_db
def test_members_see_their_usage_and_remaining_budget_not_others(client, alice, bob):
    Profile.objects.create(user=alice, budget_monthly=Decimal("5"))
    UsageRecord.objects.create(request_id="a", source="chat", user=alice, prompt_tokens=10, completion_tokens=5, cost=Decimal("1.25"))
    UsageRecord.objects.create(request_id="b", source="api", user=bob, prompt_tokens=999, completion_tokens=1, cost=Decimal("7"))
    client.force_login(alice)
    page = client.get("/settings/keys/").content.decode()
    assert "1 requests, 15 tokens, 1.2500 spent" in page
    assert "Monthly budget left: <strong>3.75</strong> of 5.00" in page
    assert "999" not in page and "1000" not in page


@pytest.mark.django_db(transaction=True)
async def test_a_member_whose_budget_is_spent_sees_why_in_the_chat(alice, conversation):
    await Profile.objects.acreate(user=alice, budget_total=Decimal("1"))
    await Model.objects.filter(name="echo").aupdate(input_price=1_000_000, output_price=1_000_000)
    await UsageRecord.objects.acreate(request_id="old", source="chat", user=alice, cost=Decimal("1"))
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="hello", model="echo")
    final = (await tab.read_reply(status="error"))[-1]
    assert "Your total budget of 1.00 USD is spent." in final
    await tab.close()


@pytest.mark.django_db(transaction=True)
def test_a_members_budget_covers_their_api_keys_too(api_server, alice, provider):
    Profile.objects.create(user=alice, budget_total=Decimal("1"))
    UsageRecord.objects.create(request_id="old", source="chat", user=alice, cost=Decimal("1"))
    Model.objects.filter(name="echo").update(input_price=1, output_price=1)
    _, secret = ApiKey.issue(alice)  # the key itself has no budget
    response = httpx.post(f"{api_server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                          json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 402
    assert response.json()["error"]["message"] == "Your total budget of 1.00 USD is spent."


@pytest.mark.django_db(transaction=True)
async def test_a_preset_puts_its_messages_before_the_conversation(alice, conversation, upstream):
    await PromptTemplate.objects.acreate(name="pirate", messages=[{"role": "system", "content": "Talk like a {{who}}."}],
                                         variables={"who": "pirate"})
    tab = Tab(alice, conversation.id)
    await tab.connect()
    await tab.send(message="ahoy", model="echo", template="pirate")
    await tab.read_reply()
    sent = upstream.requests_for("echo")[-1]["body"]["messages"]
    assert sent == [{"role": "system", "content": "Talk like a pirate."}, {"role": "user", "content": "ahoy"}]
    assert (await Message.objects.filter(conversation=conversation).acount()) == 2
    await tab.close()
