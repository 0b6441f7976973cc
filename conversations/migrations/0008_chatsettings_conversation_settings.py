"""Chat settings: a conversation's parameters and its preset's slot values."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0007_organise_conversation_flags"),
    ]

    # Nullable with no default: Django adds each with a plain ALTER TABLE ... ADD COLUMN on SQLite
    # too (no table rebuild, which the search triggers on conversations_conversation do not survive).
    operations = [
        migrations.AddField(model_name="conversation", name="parameters", field=models.JSONField(blank=True, null=True)),
        migrations.AddField(model_name="conversation", name="variables", field=models.JSONField(blank=True, null=True)),
    ]
