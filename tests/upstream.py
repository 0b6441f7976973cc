"""A loopback OpenAI-compatible upstream for the tests: scripted replies on a free port.

The model asked for picks the behaviour:
  echo        "Echo: <last user message>", word by word, as fast as it goes
  slow        the same, 30 ms a word
  long        400 words, 20 ms apart (for Stop and reload mid-reply)
  markdown    a reply with a heading, a table, a code block and a <script> tag
  reasoner    reasoning_content deltas first, then the answer
  tools       a tool call (get_weather) instead of text, until a tool result comes back
  fail-429    HTTP 429;  fail-500: HTTP 500;  fail-401: HTTP 401
  break       a few words, then the connection drops without [DONE]
  flaky       as break the first time it is asked a prompt, as echo after (a passing fault;
              not in MODELS: a test that wants it adds the model)
  no-finish   the words, then [DONE] with no finish_reason and no usage
  truncate    half the words, then the body ends cleanly: no finish_reason, no [DONE] (not
              streaming: half a JSON body)
  separators  a reply holding U+2028, U+2029, U+0085 (raw UTF-8 in the JSON) and the control
              characters str.splitlines() also breaks on, with CRLF line ends, each CR and its LF
              sent in separate writes
  hang        accepts, then sends nothing for 30 s
  leak-NNN    HTTP NNN with an error that echoes the Authorization header it got (a provider that
              puts its key in its errors), OpenAI's code and param, and Retry-After: 7 on a 429
  leak-event  a few words, then an error event that echoes the key, mid-stream
Every request is kept in `requests` (path, JSON body, headers) for the tests to inspect.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import uvicorn

MODELS = ["echo", "slow", "long", "markdown", "reasoner", "tools", "fail-429", "fail-500", "fail-401",
          "break", "no-finish", "truncate", "separators", "hang", "leak-400", "leak-401", "leak-429", "leak-500",
          "leak-event"]
LEAK_CODES = {400: ("context_length_exceeded", "messages"), 401: ("invalid_api_key", None),
              429: ("rate_limit_exceeded", None), 500: ("server_error", None)}

# Every character str.splitlines() breaks on that is not a line end in SSE.
SEPARATORS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"
SEPARATORS_REPLY = f"one{SEPARATORS[0]}two {SEPARATORS[1]}three {SEPARATORS[2]}four {SEPARATORS[3:]}five"

MARKDOWN_REPLY = (
    "# Result\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n\n"
    "<script>alert('x')</script> [bad](javascript:alert(1))"
)


def words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or [text]


def last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
            return str(content or "")
    return ""


class Upstream:
    def __init__(self):
        self.requests: list[dict] = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.url}/v1"
        self.cancelled = 0  # streams whose client went away before the end
        self.flaky_seen: set[str] = set()  # prompts the "flaky" model has broken on once
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="off", log_level="critical", interface="asgi3",
                                http="h11", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Upstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def requests_for(self, model: str) -> list[dict]:
        return [r for r in self.requests if (r["body"] or {}).get("model") == model]

    # -- the ASGI app

    async def app(self, scope, receive, send):
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw) if raw else None
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"path": scope["path"], "body": body, "headers": headers})
        if scope["path"] == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"} for m in MODELS]})
        elif scope["path"] == "/echo-key/v1/models":  # refuses the key and echoes it back, as some do
            await _json(send, 401, {"error": {"message": f"Incorrect API key provided: {headers.get('authorization')}"}})
        elif scope["path"] == "/v1/chat/completions" and body:
            await self.chat(body, send, receive, headers)
        else:
            await _json(send, 404, {"error": {"message": "no such path"}})

    async def chat(self, body: dict, send, receive, headers: dict):
        model = body.get("model", "")
        if model.startswith("leak-") and model != "leak-event":
            status = int(model.split("-")[1])
            code, param = LEAK_CODES[status]
            said = f"Incorrect API key provided: {headers.get('authorization', '')}. You sent {body.get('messages')}"
            await _json(send, status, {"error": {"message": said, "type": "invalid_request_error", "code": code,
                                                 "param": param}},
                        headers=[(b"retry-after", b"7")] if status == 429 else [])
            return
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            await _json(send, status, {"error": {"message": f"scripted failure {status}", "type": "test"}})
            return
        if model == "hang":
            await asyncio.sleep(30)
            return
        reasoning, text, tool_calls = self.script(model, body)
        if model == "truncate" and not body.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            whole = json.dumps({"id": "chatcmpl-up", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode()
            await send({"type": "http.response.body", "body": whole[: len(whole) // 2], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if not body.get("stream"):
            message = {"role": "assistant", "content": None if tool_calls else text, "refusal": None}
            if reasoning:
                message["reasoning_content"] = reasoning
            if tool_calls:
                message["tool_calls"] = tool_calls
            await _json(send, 200, {
                "id": "chatcmpl-up", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": i, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop",
                             "logprobs": None}
                            for i in range(body.get("n") or 1)],
                "usage": self.usage(body, reasoning + text),
            })
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        delay = {"slow": 0.03, "long": 0.02}.get(model, 0.0)
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            await self.stream(send, model, body, reasoning, text, tool_calls, delay, gone, headers)
        except _Gone:
            self.cancelled += 1
        finally:
            watcher.cancel()

    def script(self, model: str, body: dict) -> tuple[str, str, list]:
        prompt = last_user_text(body)
        if model == "long":
            return "", " ".join(f"word{i}" for i in range(400)), []
        if model == "markdown":
            return "", MARKDOWN_REPLY, []
        if model == "separators":
            return "", SEPARATORS_REPLY, []
        if model == "reasoner":
            return "Thinking about: " + prompt, "Answer: " + prompt, []
        if model == "tools" and not any(m.get("role") == "tool" for m in body.get("messages") or []):
            return "", "", [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]
        if model == "tools":
            result = next(m for m in reversed(body["messages"]) if m.get("role") == "tool")
            return "", f"The tool said: {result.get('content')}", []
        return "", "Echo: " + prompt, []

    async def stream(self, send, model, body, reasoning, text, tool_calls, delay, gone, headers):
        def chunk(delta, finish=None, **extra):
            return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        async def event(data):
            if gone.is_set():
                raise _Gone
            if model == "separators":  # raw UTF-8, CRLF, each CR and its LF in separate writes
                payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
                for part in (f"data: {payload}\r", "\n\r", "\n"):
                    await send({"type": "http.response.body", "body": part.encode(), "more_body": True})
                    await asyncio.sleep(0.005)
                return
            payload = data if isinstance(data, str) else json.dumps(data)
            await send({"type": "http.response.body", "body": f"data: {payload}\n\n".encode(), "more_body": True})
            if delay:
                await asyncio.sleep(delay)

        await event(chunk({"role": "assistant", "content": ""}))
        for piece in words(reasoning) if reasoning else []:
            await event(chunk({"reasoning_content": piece}))
        if tool_calls:
            call = tool_calls[0]
            await event(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                               "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            await event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}))
        pieces = words(text) if text else []
        breaks = model == "break"
        if model == "flaky" and (prompt := last_user_text(body)) not in self.flaky_seen:
            self.flaky_seen.add(prompt)
            breaks = True
        for i, piece in enumerate(pieces):
            if breaks and i == 3:
                raise RuntimeError("scripted break")  # uvicorn drops the connection mid-stream
            if model == "leak-event" and i == 3:
                await event({"error": {"message": f"Upstream trouble with {headers.get('authorization', '')}",
                                       "code": "server_error"}})
                break
            if model == "truncate" and i == len(pieces) // 2:
                await send({"type": "http.response.body", "body": b"", "more_body": False})  # a clean end
                return
            await event(chunk({"content": piece}))
        if model != "no-finish":
            await event(chunk({}, "tool_calls" if tool_calls else "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                await event({**chunk({}), "choices": [], "usage": self.usage(body, reasoning + text)})
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    def usage(body: dict, completion: str) -> dict:
        prompt = sum(len(words(str(m.get("content") or ""))) for m in body.get("messages") or [])
        completion_tokens = len(words(completion)) if completion else 0
        return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


class _Gone(Exception):
    """The client went away mid-stream."""


async def _watch_disconnect(receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _json(send, status: int, data: dict, headers: list | None = None) -> None:
    payload = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
