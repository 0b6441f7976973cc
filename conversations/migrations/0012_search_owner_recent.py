"""PostgreSQL: the owner's messages newest first, for a search's first look (search/postgres.py)."""

from importlib import import_module

from django.db import migrations

VendorSQL = import_module("conversations.migrations.0002_search").VendorSQL


class Migration(migrations.Migration):
    dependencies = [("conversations", "0011_sso_identity")]

    operations = [
        # Serves: search_owner_id = %s ORDER BY id DESC LIMIT n, read until enough match.
        VendorSQL(
            "postgresql",
            ["CREATE INDEX conversations_message_owner_recent ON conversations_message (search_owner_id, id DESC)"],
            ["DROP INDEX conversations_message_owner_recent"],
        ),
    ]
