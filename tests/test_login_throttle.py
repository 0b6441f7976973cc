"""Login throttling on both login pages: repeated failures lock an account or an address out."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

REFUSED = "Too many failed logins"


def attempt(client, path: str, username: str, password: str, address: str = "10.0.0.1"):
    data = {"username": username, "password": password}
    if path == "/admin/login/":
        data["this_is_the_login_form"] = "1"
    return client.post(path, data, REMOTE_ADDR=address)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_repeated_wrong_passwords_lock_the_account_for_a_cool_off(client, alice, charlie, path):
    user, password = ("charlie", "charlie-password") if path == "/admin/login/" else ("alice", "alice-password")
    for _ in range(5):
        response = attempt(client, path, user, "wrong")
        assert response.status_code == 200 and REFUSED not in response.content.decode()
    # The sixth attempt is refused, the right password too, from any address, on either page.
    for address in ("10.0.0.1", "10.9.9.9"):
        for page in ("/accounts/login/", "/admin/login/"):
            response = attempt(client, page, user, password, address)
            assert response.status_code == 429
            assert REFUSED in response.content.decode() and "Try again in 15 minutes" in response.content.decode()
            assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    # Usernames are compared as a person would type them.
    assert attempt(client, path, user.upper(), password).status_code == 429
    # Another account from the same address still logs in.
    response = attempt(client, "/accounts/login/", "bob-who-does-not-exist", "x")
    assert response.status_code == 200 and REFUSED not in response.content.decode()


def test_one_address_trying_many_accounts_is_locked_out(client, alice):
    for i in range(20):
        assert attempt(client, "/accounts/login/", f"guess{i}", "wrong", "10.0.0.2").status_code == 200
    response = attempt(client, "/accounts/login/", "alice", "alice-password", "10.0.0.2")
    assert response.status_code == 429 and REFUSED in response.content.decode()
    # alice herself, from her own address, is not locked out by someone else's guessing.
    response = attempt(client, "/accounts/login/", "alice", "alice-password", "10.0.0.3")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(alice.pk)


def test_a_successful_login_clears_the_account_s_failures(client, alice):
    for _ in range(4):
        attempt(client, "/accounts/login/", "alice", "wrong")
    assert attempt(client, "/accounts/login/", "alice", "alice-password").status_code == 302
    client.logout()
    for _ in range(4):
        assert attempt(client, "/accounts/login/", "alice", "wrong").status_code == 200
    assert attempt(client, "/accounts/login/", "alice", "alice-password").status_code == 302


@override_settings(LOGIN_COOLOFF_SECONDS=1)
def test_after_the_cool_off_the_account_may_log_in_again(client, alice):
    for _ in range(5):
        attempt(client, "/accounts/login/", "alice", "wrong")
    assert attempt(client, "/accounts/login/", "alice", "alice-password").status_code == 429
    deadline = time.monotonic() + 10
    while (response := attempt(client, "/accounts/login/", "alice", "alice-password")).status_code == 429:
        assert time.monotonic() < deadline, "still locked out long after the cool-off"
        time.sleep(0.1)
    assert response.status_code == 302


def test_with_redis_unreachable_logins_work_unthrottled(client, alice, caplog):
    from conversations import throttle

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens on port 1
        throttle._limiter.cache_clear()
        try:
            for _ in range(7):
                assert attempt(client, "/accounts/login/", "alice", "wrong").status_code == 200
            assert attempt(client, "/accounts/login/", "alice", "alice-password").status_code == 302
        finally:
            throttle._limiter.cache_clear()
    assert "login throttling is off while Redis is unreachable" in caplog.text
