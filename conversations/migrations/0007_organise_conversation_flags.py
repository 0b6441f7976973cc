"""Organising conversations: pinned, archived, a title the member set; the title's usage source."""

from django.db import migrations, models

FLAGS = ("pinned", "archived", "title_set_by_member")


def add_flag(name: str) -> migrations.SeparateDatabaseAndState:
    # A plain ADD COLUMN: on SQLite, Django's AddField rebuilds the table, which the search view
    # and triggers on conversations_conversation (0002_search) do not survive.
    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AddField(model_name="conversation", name=name, field=models.BooleanField(default=False)),
        ],
        database_operations=[
            migrations.RunSQL(
                f"ALTER TABLE conversations_conversation ADD COLUMN {name} boolean NOT NULL DEFAULT false",
                f"ALTER TABLE conversations_conversation DROP COLUMN {name}",
            ),
        ],
    )


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0006_lookfeel_preferences"),
    ]

    operations = [
        *(add_flag(name) for name in FLAGS),
        migrations.AlterField(
            model_name="usagerecord",
            name="source",
            field=models.CharField(choices=[("api", "Api"), ("chat", "Chat"), ("title", "Title")], max_length=8),
        ),
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(fields=["owner", "archived", "-pinned", "-updated_at", "-id"], name="conversation_owner_list"),
        ),
    ]
