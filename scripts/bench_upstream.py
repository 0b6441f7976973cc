"""A fast OpenAI-compatible upstream for the gateway benchmark (not for tests: see tests/upstream.py).

Models: "fast" streams 64 tokens as fast as it can; "paced" waits 200 ms for the first token,
then 20 ms a token. Run: python scripts/bench_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

TOKENS = 64


def chunk(model: str, i: int, content: str | None, finish=None) -> bytes:
    delta = {"content": content} if content is not None else {}
    data = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"].endswith("/models"):
        payload = json.dumps({"object": "list", "data": [{"id": "fast"}, {"id": "paced"}]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return
    request = json.loads(body)
    model = request["model"]
    paced = model == "paced"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    if paced:
        await asyncio.sleep(0.2)
    for i in range(TOKENS):
        await send({"type": "http.response.body", "body": chunk(model, i, f" tok{i}"), "more_body": True})
        if paced:
            await asyncio.sleep(0.02)
    tail = chunk(model, TOKENS, None, "stop")
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                 "usage": {"prompt_tokens": 5, "completion_tokens": TOKENS, "total_tokens": TOKENS + 5}}
        tail += b"data: " + json.dumps(usage).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n", "more_body": False})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", loop="uvloop", http="httptools",
                lifespan="off", interface="asgi3")
