"""Start-up checks: a missing or wrong encryption key is a clear error, never garbage later."""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


@register()
def encryption_keys_are_fernet_keys(app_configs=None, **kwargs):
    from conversations import encryption

    try:
        encryption._fernet()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="chatsite.E001")]
    return []


@register(Tags.database)
def stored_secrets_open_with_the_keys(app_configs=None, databases=None, **kwargs):
    """Run by `migrate` and `check --database default`: every stored provider key decrypts."""
    from django.db import DatabaseError

    from conversations.encryption import DecryptionError
    from conversations.models import Provider

    if not databases:
        return []
    try:
        providers = list(Provider.objects.exclude(api_key_encrypted=""))
    except DatabaseError:
        return []  # not migrated yet
    errors = []
    for provider in providers:
        try:
            provider.api_key  # noqa: B018 - decrypting is the check
        except DecryptionError:
            errors.append(Error(
                f"The API key of provider {provider.name!r} cannot be decrypted with CHATSITE_ENCRYPTION_KEYS.",
                hint="Put the key it was encrypted with back in the list (after the new one), then run "
                     "`manage.py rotate_encryption`.",
                id="chatsite.E002",
            ))
    return errors
