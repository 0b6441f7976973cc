"""Messages form a tree; existing conversations become single chains (each message's parent is the
one before it), shown at their newest message."""

import django.db.models.deletion
from django.db import migrations, models

BATCH = 1000


def chain(apps, schema_editor):
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("conversations", "Message")
    for conversation_id in Conversation.objects.values_list("id", flat=True).iterator():
        previous, changed = None, []
        for message in Message.objects.filter(conversation_id=conversation_id).only("id").order_by("id").iterator():
            message.parent_id = previous
            previous = message.id
            changed.append(message)
            if len(changed) >= BATCH:
                Message.objects.bulk_update(changed, ["parent"])
                changed = []
        Message.objects.bulk_update(changed, ["parent"])
        Conversation.objects.filter(pk=conversation_id).update(current_leaf=previous)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_reliability_usage"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="children", to="conversations.message"),
        ),
        migrations.AddField(
            model_name="conversation",
            name="current_leaf",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="+", to="conversations.message"),
        ),
        migrations.RunPython(chain, migrations.RunPython.noop),
    ]
