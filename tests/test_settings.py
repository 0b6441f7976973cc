"""Settings from the environment: safe defaults, clear errors, a clean deploy check."""

from __future__ import annotations

import os
import subprocess
import sys

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
