"""python manage.py rotate_encryption: re-encrypt every stored secret with the newest key.

Rotating: put a new key first in CHATSITE_ENCRYPTION_KEYS (keeping the old ones after it), run
this, then drop the old keys.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from conversations import encryption
from conversations.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt every stored provider API key with the newest CHATSITE_ENCRYPTION_KEYS key."

    def handle(self, *args, **options):
        count = 0
        with transaction.atomic():
            for provider in Provider.objects.select_for_update().exclude(api_key_encrypted=""):
                try:
                    provider.api_key_encrypted = encryption.rotate(provider.api_key_encrypted)
                except encryption.DecryptionError as exc:
                    raise CommandError(f"Provider {provider.name!r}: {exc} Nothing was changed.") from exc
                provider.save(update_fields=["api_key_encrypted"])
                count += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} provider keys with the newest key."))
