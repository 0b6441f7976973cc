"""A tab, for tests: a websocket to a conversation, and readers for the frames it receives."""

from __future__ import annotations

import html
import re
import time

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from conversations.routing import websocket_urlpatterns

router = URLRouter(websocket_urlpatterns)


class Tab:
    def __init__(self, user, conversation_id: int, since: float | None = None, application=None, headers=None):
        path = f"/ws/conversations/{conversation_id}/" + (f"?since={since}" if since is not None else "")
        self.comm = WebsocketCommunicator(application or router, path, headers=headers or [])
        if application is None:
            self.comm.scope["user"] = user
        self.frames: list[str] = []

    async def connect(self) -> bool:
        connected, _ = await self.comm.connect(timeout=30)
        return connected

    async def send(self, **content) -> None:
        await self.comm.send_json_to(content)

    async def close(self) -> None:
        await self.comm.disconnect()

    async def read_until(self, predicate, timeout: float = 30.0) -> list[str]:
        """Frames up to and including the first for which predicate(frame) holds. The timeout is
        a deadline for a stuck test, generous for a loaded machine: never a speed expectation."""
        deadline = time.monotonic() + timeout
        start = len(self.frames)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame in {timeout}s; got {self.frames[start:]!r}")
            frame = await self.comm.receive_from(timeout=remaining)
            self.frames.append(frame)
            if predicate(frame):
                return self.frames[start:]

    async def read_reply(self, status: str = "complete", timeout: float = 30.0) -> list[str]:
        return await self.read_until(lambda f: f'class="message assistant {status}"' in f, timeout)

    async def drain(self, seconds: float = 0.2) -> list[str]:
        got = []
        try:
            while True:
                got.append(await self.comm.receive_from(timeout=seconds))
        except TimeoutError:
            pass
        self.frames += got
        return got


def fragments_text(frames: list[str], message_id: int) -> str:
    pattern = re.compile(rf'<span hx-swap-oob="beforeend:#msg-{message_id}-text">(.*?)</span>', re.S)
    return "".join(html.unescape(m) for frame in frames for m in pattern.findall(frame))


def streaming_text(frame: str, message_id: int) -> str | None:
    """The text of a whole streaming message (a snapshot), if the frame holds one."""
    match = re.search(rf'<div id="msg-{message_id}-text" class="body streaming-text">(.*?)</div>', frame, re.S)
    return html.unescape(match.group(1)) if match else None


def message_ids(frames: list[str]) -> list[int]:
    return [int(i) for frame in frames for i in re.findall(r'<article id="msg-(\d+)"', frame)]
