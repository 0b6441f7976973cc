"""The baseline for scripts/bench_capacity.py: a bare Channels consumer streaming replies.

No database, no authentication, no templates, no gateway: a websocket consumer that, for each
message a tab sends, streams from the upstream with the HTTP client Chatsite uses and sends the
text every 50 ms as an HTML fragment, then a final frame, as the chat's frames look. What the
stack itself costs per reply. Run: python scripts/bench_bare_chat.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

import django
from django.conf import settings

PORT, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
settings.configure(DEBUG=False, SECRET_KEY="bench", ALLOWED_HOSTS=["*"], INSTALLED_APPS=["channels"], DATABASES={})
django.setup()

import httpx2 as httpx  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

BATCH_SECONDS = 0.05
client: httpx.AsyncClient | None = None
replies = 0


class BareChat(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        global replies
        replies += 1
        asyncio.get_running_loop().create_task(self.reply(replies, json.loads(text_data)))

    async def reply(self, reply_id: int, content: dict) -> None:
        global client
        if client is None:
            client = httpx.AsyncClient(limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200))
        pending: list[str] = []
        done = asyncio.Event()

        async def publish():
            while not done.is_set():
                await asyncio.sleep(BATCH_SECONDS)
                if pending:
                    text = "".join(pending)
                    pending.clear()
                    await self.send(text_data=f'<span hx-swap-oob="beforeend:#msg-{reply_id}-text">{text}</span>')

        publisher = asyncio.create_task(publish())
        body = {"model": content.get("model"), "stream": True, "messages": [{"role": "user", "content": content.get("message")}]}
        text, buffer = [], ""
        async with client.stream("POST", f"http://127.0.0.1:{UPSTREAM}/v1/chat/completions", json=body) as response:
            async for data in response.aiter_text():
                buffer += data
                *events, buffer = buffer.split("\n\n")
                for event in events:
                    payload = event.removeprefix("data: ")
                    if payload == "[DONE]":
                        continue
                    for choice in json.loads(payload).get("choices") or ():
                        if piece := (choice.get("delta") or {}).get("content"):
                            pending.append(piece)
                            text.append(piece)
        done.set()
        await publisher
        if pending:
            await self.send(text_data=f'<span hx-swap-oob="beforeend:#msg-{reply_id}-text">{"".join(pending)}</span>')
        await self.send(text_data=f'<article id="msg-{reply_id}" class="message assistant complete">{"".join(text)}</article>')


async def healthz(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter({"http": healthz, "websocket": BareChat.as_asgi()})

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(application, host="127.0.0.1", port=PORT, log_level="warning", loop="uvloop", http="httptools",
                lifespan="off", backlog=4096, ws_per_message_deflate=False)  # as manage.py serve
