"""A fast OpenAI-compatible upstream for the benchmarks (not for tests: see tests/upstream.py).

Models: "fast" streams 64 tokens as fast as it can; "paced" waits 200 ms for the first token,
then 20 ms a token (on a fixed schedule); "paced-N" is "paced" with N tokens (scripts/bench_capacity.py: "paced-400" is
a reply of 8.2 s). A request without `stream` gets the whole answer at once (the chat's titles).
Run: python scripts/bench_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

TOKENS = 64
FIRST_TOKEN_SECONDS, TOKEN_SECONDS = 0.2, 0.02


def chunk(model: str, i: int, content: str | None, finish=None) -> bytes:
    delta = {"content": content} if content is not None else {}
    data = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def _json(send, payload: dict) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


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
        await _json(send, {"object": "list", "data": [{"id": "fast"}, {"id": "paced"}, {"id": "paced-400"}]})
        return
    request = json.loads(body)
    model = request["model"]
    paced = model.startswith("paced")
    tokens = int(model.split("-")[1]) if model.startswith("paced-") else TOKENS
    if not request.get("stream"):
        await _json(send, {"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                           "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                                        "message": {"role": "assistant", "content": "Bench title"}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    start = time.monotonic()
    for i in range(tokens):
        if paced:  # on a fixed schedule from the request, so a busy machine does not stretch it
            await asyncio.sleep(start + FIRST_TOKEN_SECONDS + i * TOKEN_SECONDS - time.monotonic())
        await send({"type": "http.response.body", "body": chunk(model, i, f" tok{i}"), "more_body": True})
    tail = chunk(model, tokens, None, "stop")
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                 "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": tokens + 5}}
        tail += b"data: " + json.dumps(usage).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n", "more_body": False})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", loop="uvloop", http="httptools",
                lifespan="off", interface="asgi3", backlog=4096)
