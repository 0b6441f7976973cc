"""The chat websocket's doors, through the whole ASGI application: origin, login, owner, activity,
and frames it cannot take."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client, override_settings

from chatsite.asgi import application
from conversations.models import Conversation, Message
from tests.wsclient import Tab

pytestmark = [pytest.mark.django_db(transaction=True)]

SITE = "127.0.0.1:8000"


async def session_cookie(user) -> str:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def tab(conversation_id: int, *, cookie: str = "", origin: str | None = f"http://{SITE}",
              host: str = SITE) -> Tab:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return Tab(None, conversation_id, application=application, headers=headers)


async def test_the_site_s_own_origin_with_a_login_is_accepted_and_catches_up(alice, conversation):
    await Message.objects.acreate(conversation=conversation, role="user", content="my secret plans")
    t = await tab(conversation.id, cookie=await session_cookie(alice))
    assert await t.connect()
    await t.send(message="hello")
    frames = await t.read_reply()
    assert any("Echo: hello" in f for f in frames)
    await t.close()


async def test_without_a_login_the_socket_is_refused(alice, conversation):
    t = await tab(conversation.id)
    assert not await t.connect()


async def test_another_member_s_conversation_is_refused(alice, bob, conversation):
    t = await tab(conversation.id, cookie=await session_cookie(bob))
    assert not await t.connect()


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:9999",  # same host, another port: another site
    "https://127.0.0.1:8000",  # another scheme
    "http://evil.example",
    "http://127.0.0.1",  # port 80
    "null",
    None,  # no Origin at all
])
async def test_a_foreign_origin_is_refused_before_anything_is_sent(alice, conversation, origin):
    await Message.objects.acreate(conversation=conversation, role="user", content="my secret plans")
    t = await tab(conversation.id, cookie=await session_cookie(alice), origin=origin)
    assert not await t.connect()
    assert await t.comm.receive_nothing(timeout=0.2)


async def test_a_host_outside_allowed_hosts_is_refused(alice, conversation):
    t = await tab(conversation.id, cookie=await session_cookie(alice), origin="http://evil.example",
                  host="evil.example")
    assert not await t.connect()


async def test_csrf_trusted_origins_are_accepted_port_and_all(alice, conversation):
    cookie = await session_cookie(alice)
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://chat.example.com", "https://*.example.org:8443"]):
        for origin in ["https://chat.example.com", "https://chat.example.com:443", "https://a.example.org:8443"]:
            t = await tab(conversation.id, cookie=cookie, origin=origin)
            assert await t.connect(), origin
            await t.close()
        for origin in ["http://chat.example.com", "https://chat.example.com:8443", "https://example.org.evil:8443",
                       "https://a.example.org"]:
            t = await tab(conversation.id, cookie=cookie, origin=origin)
            assert not await t.connect(), origin


async def test_behind_a_tls_proxy_the_https_origin_is_the_site_s_own(alice, conversation):
    cookie = await session_cookie(alice)
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        t = Tab(None, conversation.id, application=application, headers=[
            (b"host", b"localhost"), (b"origin", b"https://localhost"), (b"x-forwarded-proto", b"https"),
            (b"cookie", cookie.encode())])
        assert await t.connect()
        await t.close()
        t = Tab(None, conversation.id, application=application, headers=[
            (b"host", b"localhost"), (b"origin", b"http://localhost"), (b"x-forwarded-proto", b"https"),
            (b"cookie", cookie.encode())])
        assert not await t.connect()


@pytest.mark.parametrize("frame, says", [
    ("this is not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"message": "nul \u0000 here"}), "NUL"),
    ('{"message": "lone \\ud800 surrogate"}', "unpaired surrogate"),
    ('{"action": "regenerate", "message_id": {"x": 1}}', "regenerated"),
    ('{"action": "dance"}', "unknown action"),
])
async def test_a_frame_the_chat_cannot_take_is_explained_and_the_socket_stays_open(alice, conversation, frame, says):
    t = await tab(conversation.id, cookie=await session_cookie(alice))
    assert await t.connect()
    await t.comm.send_to(text_data=frame)
    notice = await t.read_until(lambda f: 'id="composer-notice"' in f)
    assert says in notice[-1]
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await t.send(message="still here")  # the same socket still works
    frames = await t.read_reply()
    assert any("Echo: still here" in f for f in frames)
    await t.close()


async def test_a_binary_frame_is_explained(alice, conversation):
    t = await tab(conversation.id, cookie=await session_cookie(alice))
    assert await t.connect()
    await t.comm.send_to(bytes_data=b"\x00\x01")
    notice = await t.read_until(lambda f: 'id="composer-notice"' in f)
    assert "JSON text frames" in notice[-1]
    await t.close()


async def test_deactivating_a_member_closes_their_open_sockets(alice, conversation):
    other = await Conversation.objects.acreate(owner=alice, model=conversation.model)
    cookie = await session_cookie(alice)
    tabs = [await tab(conversation.id, cookie=cookie), await tab(other.id, cookie=cookie)]
    for t in tabs:
        assert await t.connect()

    alice.is_active = False
    await sync_to_async(alice.save)(update_fields=["is_active"])

    for t in tabs:
        notice = await t.read_until(lambda f: "deactivated" in f)
        assert "Your account has been deactivated." in notice[-1]
        closed = await t.comm.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4401}


async def test_a_deactivated_member_s_message_is_refused_even_if_the_socket_missed_the_news(alice, conversation):
    t = await tab(conversation.id, cookie=await session_cookie(alice))
    assert await t.connect()
    # Deactivated behind the signal's back (a bulk update): the per-action check still holds.
    await type(alice).objects.filter(pk=alice.pk).aupdate(is_active=False)
    await t.send(message="one more")
    notice = await t.read_until(lambda f: "composer-notice" in f)
    assert "You are no longer logged in here" in notice[-1]
    assert (await t.comm.receive_output(timeout=5))["type"] == "websocket.close"
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_after_logging_out_elsewhere_the_open_socket_is_refused(alice, conversation):
    client = Client()
    await sync_to_async(client.force_login)(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    t = await tab(conversation.id, cookie=cookie)
    assert await t.connect()
    await sync_to_async(client.post)("/accounts/logout/")  # the same session, ended in another tab
    await t.send(message="after logout")
    notice = await t.read_until(lambda f: "composer-notice" in f)
    assert "You are no longer logged in here" in notice[-1]
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_after_a_password_change_an_old_session_s_socket_is_refused(alice, conversation):
    t = await tab(conversation.id, cookie=await session_cookie(alice))
    assert await t.connect()
    alice.set_password("a-new-password-entirely")
    await sync_to_async(alice.save)()
    await t.send(message="after the change")
    notice = await t.read_until(lambda f: "composer-notice" in f)
    assert "You are no longer logged in here" in notice[-1]
    assert not await Message.objects.filter(conversation=conversation).aexists()
