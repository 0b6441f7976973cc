"""The configured channel layer carries a burst of frames to another process's group member
without dropping any (channels-redis's core layer drops past `capacity`; ours must not)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from tests.conftest import REDIS


@pytest.mark.skipif(not REDIS, reason="the in-memory layer never leaves the process")
async def test_a_burst_of_frames_all_arrive():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("conversation.burst-test", channel)
    try:
        async def receive_all():
            return [await layer.receive(channel) for _ in range(500)]

        receiver = asyncio.create_task(receive_all())
        await asyncio.sleep(0.1)
        for i in range(500):
            await layer.group_send("conversation.burst-test", {"type": "chat.frame", "seq": i})
        received = await asyncio.wait_for(receiver, 20)
        assert [m["seq"] for m in received] == list(range(500))
    finally:
        await layer.group_discard("conversation.burst-test", channel)


@pytest.mark.skipif(not REDIS, reason="the in-memory layer never leaves the process")
async def test_a_group_send_says_how_many_other_processes_listen():
    from django.conf import settings

    from conversations.chat.layer import RedisChannelLayer

    here, elsewhere = get_channel_layer(), RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
    group, mine, theirs = "conversation.elsewhere-test", await here.new_channel(), await elsewhere.new_channel()
    await here.group_add(group, mine)
    try:
        # Only this process listens: nobody else is reached (the chat keeps its fragments here).
        assert await here.group_send_elsewhere(group, {"type": "chat.frame", "seq": 1}) == 0
        assert (await asyncio.wait_for(here.receive(mine), 5))["seq"] == 1
        await elsewhere.group_add(group, theirs)  # a tab on another process
        assert await here.group_send_elsewhere(group, {"type": "chat.frame", "seq": 2}) == 1
        assert (await asyncio.wait_for(elsewhere.receive(theirs), 5))["seq"] == 2
    finally:
        await here.group_discard(group, mine)
        await elsewhere.group_discard(group, theirs)
        await elsewhere.flush()
