"""The Redis channel layer (channels-redis' pub/sub layer), kept working in-process while Redis is away.

The layer carries what crosses processes: frames for tabs on other processes, Stop, snapshots.
Tabs on the process that writes a reply are served directly by the hub, so a process does not
need Redis to chat. channels-redis, though, raises from every call while Redis is down, and the
first call a websocket makes (subscribing its own channel) is part of the handshake: the browser
got an HTTP 500 instead of a chat. Here, while Redis cannot be reached:

- a subscription is kept in the process (the consumer starts, its channel's queue exists) and
  made in Redis as soon as Redis answers again, by a task that retries every `RETRY_SECONDS`
  (in the meantime the hub delivers this process's own frames directly, as always);
- a message for other processes is dropped (they catch up from the database: a tab's reconnect,
  the stale-reply sweep), and the first failure of an outage is logged.

Subscriptions made before the outage are renewed by redis-py itself when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _wrap_close, decode_hosts
from redis.exceptions import RedisError

log = logging.getLogger("chatsite.chat")

RETRY_SECONDS = 1.0
UNAVAILABLE = (RedisError, OSError)


class RedisChannelLayer(RedisPubSubChannelLayer):
    async def group_send_elsewhere(self, group: str, message: dict) -> int | None:
        """group_send, answering how many other processes listen to the group (Redis' count of
        the subscribers it reached, less this process's own subscription), or None when Redis
        cannot be reached."""
        layer = self._get_layer()
        group_channel = layer._get_group_channel_name(group)
        return await layer._get_shard(group_channel).publish_elsewhere(group_channel, self.serialize(message))

    def _get_layer(self):
        # As the parent's, with the loop layer below (one per event loop, as Redis clients are).
        loop = asyncio.get_running_loop()
        if loop not in self._layers:
            self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return self._layers[loop]


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, hosts=None, *args, **kwargs):
        super().__init__(hosts, *args, **kwargs)
        self._shards = [_Shard(host, self) for host in decode_hosts(hosts)]


class _Shard(RedisSingleShardConnection):
    def __init__(self, host, channel_layer):
        super().__init__(host, channel_layer)
        self._pending: set[str] = set()  # subscriptions still to be made in Redis
        self._retrying: asyncio.Task | None = None
        self._down = False

    async def publish(self, channel, message):
        try:
            await super().publish(channel, message)
        except UNAVAILABLE as exc:
            self._unavailable(exc)
        else:
            self._available()

    async def publish_elsewhere(self, channel, message) -> int | None:
        try:
            async with self._lock:
                self._ensure_redis()
                reached = await self._redis.publish(channel, message)
                mine = channel in self._subscribed_to
        except UNAVAILABLE as exc:
            self._unavailable(exc)
            return None
        self._available()
        return reached - mine

    async def subscribe(self, channel):
        try:
            await super().subscribe(channel)
        except UNAVAILABLE as exc:
            self._unavailable(exc)
            self._pending.add(channel)
            if self._retrying is None or self._retrying.done():
                self._retrying = asyncio.ensure_future(self._subscribe_pending())

    async def unsubscribe(self, channel):
        self._pending.discard(channel)
        try:
            await super().unsubscribe(channel)
        except UNAVAILABLE as exc:
            self._unavailable(exc)

    async def flush(self):
        self._pending.clear()
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        await super().flush()

    async def _subscribe_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(RETRY_SECONDS)
            for channel in list(self._pending):
                if channel not in self._pending:  # unsubscribed meanwhile
                    continue
                try:
                    await RedisSingleShardConnection.subscribe(self, channel)
                except UNAVAILABLE:
                    break
                self._pending.discard(channel)
        self._available()

    def _available(self) -> None:
        if self._down:
            self._down = False
            log.info("Redis answers again: messages cross processes again")

    def _unavailable(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning("Redis is unavailable (%r): this process serves its own tabs only until it returns", exc)
