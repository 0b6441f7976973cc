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
