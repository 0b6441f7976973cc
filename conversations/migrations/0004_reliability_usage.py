"""Usage rows from a request's start (pending, with a heartbeat), and a reply's request id."""

import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('conversations', '0003_profiles_and_presets'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # A plain ADD COLUMN: on SQLite, Django's AddField rebuilds the table, which the search
        # views and triggers on conversations_message (0002_search) do not survive.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name='message',
                    name='request_id',
                    field=models.CharField(blank=True, default='', max_length=64),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE conversations_message ADD COLUMN request_id varchar(64) NOT NULL DEFAULT ''",
                    "ALTER TABLE conversations_message DROP COLUMN request_id",
                ),
            ],
        ),
        migrations.AddField(
            model_name='usagerecord',
            name='updated_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddIndex(
            model_name='usagerecord',
            index=models.Index(condition=models.Q(('status', 'pending')), fields=['updated_at'], name='usage_pending_heartbeat'),
        ),
    ]
