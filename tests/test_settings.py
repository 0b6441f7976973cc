"""Settings from the environment: safe defaults, clear errors, a clean deploy check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from tests.live import ROOT

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-0123456789",
    "CHATSITE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "chat.example.com,127.0.0.1",
}


def manage(*args, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env}, timeout=60)


def test_the_deploy_check_is_clean_behind_an_https_proxy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, CHATSITE_HTTPS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_is_a_clear_error():
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_wrong_encryption_key_is_a_clear_error_at_start():
    result = manage("check", **{**PRODUCTION, "CHATSITE_ENCRYPTION_KEYS": "not-a-fernet-key"})
    assert result.returncode != 0
    assert "CHATSITE_ENCRYPTION_KEYS holds a key that is not a Fernet key" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_with_debug_off_plain_http_on_loopback_serves_pages_and_static_files(django_db_blocker):
    import httpx2 as httpx

    from tests.live import Server

    with django_db_blocker.unblock():
        server = Server(env={**PRODUCTION, "DJANGO_SETTINGS_MODULE": "tests.settings"}).start()
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        css = httpx.get(f"{server.url}/static/css/app.css")
        assert css.status_code == 200 and "--accent" in css.text  # WhiteNoise, no collectstatic
        htmx = httpx.get(f"{server.url}/static/django_htmx/htmx-2.min.js")
        assert htmx.status_code == 200
        first_visit = httpx.get(f"{server.url}/", follow_redirects=True)  # no users yet: the set-up page
        assert first_visit.status_code == 200 and "Create the admin account" in first_visit.text
    finally:
        server.stop()


def test_hsts_covers_subdomains_and_preload_only_when_turned_on():
    show = "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD)"
    default = manage("shell", "-c", show, **PRODUCTION, CHATSITE_HTTPS="1")
    assert default.stdout.splitlines()[-1].split() == ["31536000", "False", "False"], default.stderr
    on = manage("shell", "-c", show, **PRODUCTION, CHATSITE_HTTPS="1", SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
                SECURE_HSTS_PRELOAD="1")
    assert on.stdout.splitlines()[-1].split() == ["31536000", "True", "True"], on.stderr
    # Turned on, the deploy check is still clean; off, its warnings about them are silenced on purpose.
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, CHATSITE_HTTPS="1",
                    SECURE_HSTS_INCLUDE_SUBDOMAINS="1", SECURE_HSTS_PRELOAD="1")
    assert result.returncode == 0, result.stdout + result.stderr
