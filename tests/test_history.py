"""What the upstream is sent for a reply: the history, trimmed to the model's context window."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from conversations.chat.history import REPLY_RESERVE_TOKENS, messages_for_reply
from conversations.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_oldest_messages_go_first_when_the_window_is_full(conversation):
    conversation.system_prompt = "Be brief."
    conversation.save()
    for i in range(10):
        Message.objects.create(conversation=conversation, role="user" if i % 2 == 0 else "assistant", content=f"m{i} " + "x" * 396)
    reply = Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    # Each message is about 100 tokens (+4): a window with room for three of them after the reserve.
    sent = async_to_sync(messages_for_reply)(conversation, reply, REPLY_RESERVE_TOKENS + 3 * 104 + 10)
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert [m["content"][:2] for m in sent[1:]] == ["m7", "m8", "m9"]
    everything = async_to_sync(messages_for_reply)(conversation, reply, None)
    assert len(everything) == 11


def test_the_latest_message_is_sent_even_alone_over_the_window(conversation):
    Message.objects.create(conversation=conversation, role="user", content="y" * 40_000)
    reply = Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    sent = async_to_sync(messages_for_reply)(conversation, reply, 2048)
    assert len(sent) == 1 and len(sent[0]["content"]) == 40_000
