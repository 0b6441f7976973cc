"""Reversible encryption for stored secrets (provider API keys).

MultiFernet over CHATSITE_ENCRYPTION_KEYS (comma-separated, newest first): new values are
encrypted with the newest key, and any listed key decrypts, so keys can be rotated by adding a new
one in front and running `manage.py rotate_encryption`.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret that none of the configured keys can open."""


@cache
def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip()) for key in settings.ENCRYPTION_KEYS])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "CHATSITE_ENCRYPTION_KEYS holds a key that is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)."
        ) from exc


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "A stored secret cannot be decrypted with CHATSITE_ENCRYPTION_KEYS: "
            "the key it was encrypted with is missing from the list."
        ) from exc


def rotate(token: str) -> str:
    """The same secret, encrypted with the newest key."""
    return _fernet().rotate(token.encode()).decode()
