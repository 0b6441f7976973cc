"""A small OpenAI-compatible server for one GGUF model, run by llama.cpp in a child process.

    python -m conversations.local.server --model FILE --name smollm2-135m --port 8011 --threads 1

Routes: POST /v1/chat/completions (streamed or not), GET /v1/models, GET /health.

One generation at a time: llama.cpp has one context per model, so requests queue (first come,
first served) on an asyncio lock, and the generation itself runs in a worker thread so that the
event loop keeps reading requests and noticing disconnects meanwhile. A client that goes away
stops its generation within one token, and the next request in the queue starts. A queued
stream gets its headers at once and an SSE comment every few seconds, so that a client's read
timeout measures the model's silence, not the queue's length.

Usage (prompt and completion tokens) is counted with the model's own tokenizer and sent in
streams too when `stream_options.include_usage` is set, as OpenAI does.

This module must stay importable without Django: the supervisor runs it as its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("chatsite.local")

# Sampling defaults for a small instruct model (llama-cpp-python's chat defaults): a low
# temperature keeps a 135M model on topic; callers may send their own.
DEFAULTS = {"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}
KEEPALIVE_SECONDS = 5.0
EXIT_PORT_TAKEN = 3  # the supervisor's cue that another process already serves the port


class BadRequest(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid_request", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict:
        kind = "not_found_error" if self.status == 404 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "code": self.code, "param": self.param}}


def _text(content) -> str:
    """OpenAI message content (a string, or a list of parts) as the plain text a template takes."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    raise BadRequest(400, "A message's content must be a string or a list of parts.", param="messages")


class LocalModel:
    """One llama.cpp model, its chat template and its queue."""

    def __init__(self, path: str | Path, name: str, *, threads: int = 1, n_ctx: int = 0, default_max_tokens: int | None = None):
        from llama_cpp import GGML_TYPE_Q8_0, Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.name = name
        self.default_max_tokens = default_max_tokens
        options = {"model_path": str(path), "n_ctx": n_ctx, "n_threads": threads, "n_threads_batch": threads, "verbose": False}
        try:
            # The attention cache in 8 bits: 8192 tokens of context in about 100 MB instead of 190.
            self.llama = Llama(**options, flash_attn=True, type_k=GGML_TYPE_Q8_0, type_v=GGML_TYPE_Q8_0)
        except Exception:  # a llama.cpp build without it
            self.llama = Llama(**options)
        self.n_ctx = self.llama.n_ctx()
        # The chat template the GGUF carries, set up as llama-cpp-python does for its chat handler.
        eos, bos = self.llama.token_eos(), self.llama.token_bos()
        vocab = self.llama._model
        self.formatter = Jinja2ChatFormatter(
            template=self.llama.metadata["tokenizer.chat_template"],
            eos_token=vocab.token_get_text(eos) if eos != -1 else "",
            bos_token=vocab.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.lock = asyncio.Lock()  # FIFO: waiters are served in the order they came
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.queued = 0
        self.generations = 0

    # -- tokens

    def count(self, text: str) -> int:
        """Tokens in a piece of generated text, by the model's own tokenizer."""
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=True)) if text else 0

    def prompt(self, messages: list[dict]) -> tuple[list[int], list[str], object]:
        """The conversation through the model's chat template: (prompt tokens, stop strings,
        stopping criteria)."""
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "`messages` must be a non-empty list.", param="messages")
        clean = []
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(400, "Each message needs a `role`.", param="messages")
            role = "system" if message["role"] == "developer" else message["role"]
            clean.append({"role": role, "content": _text(message.get("content"))})
        try:
            result = self.formatter(messages=clean)
        except Exception as exc:  # the template's raise_exception, or a Jinja error
            raise BadRequest(400, f"The messages do not fit the model's chat template: {exc}", param="messages") from exc
        tokens = self.llama.tokenize(result.prompt.encode(), add_bos=not result.added_special, special=True)
        if len(tokens) >= self.n_ctx:
            raise BadRequest(
                400,
                f"This conversation is {len(tokens)} tokens long; the model's context window is {self.n_ctx}.",
                code="context_length_exceeded", param="messages",
            )
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, stop, result.stopping_criteria

    def options(self, body: dict, prompt_len: int, stop: list[str]) -> dict:
        """llama.cpp's sampling options from an OpenAI request body."""
        options = dict(DEFAULTS)
        for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p", "repeat_penalty"):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise BadRequest(400, f"`{key}` must be a number.", param=key)
                options[key] = value
        if body.get("seed") is not None:
            if not isinstance(body["seed"], int):
                raise BadRequest(400, "`seed` must be an integer.", param="seed")
            options["seed"] = body["seed"]
        requested = body.get("max_completion_tokens") or body.get("max_tokens") or self.default_max_tokens
        if requested is not None and (not isinstance(requested, int) or requested < 1):
            raise BadRequest(400, "`max_tokens` must be a positive integer.", param="max_tokens")
        room = self.n_ctx - prompt_len
        options["max_tokens"] = min(requested, room) if requested else room
        extra = body.get("stop") or []
        extra = [extra] if isinstance(extra, str) else extra
        if not isinstance(extra, list) or not all(isinstance(s, str) for s in extra):
            raise BadRequest(400, "`stop` must be a string or a list of strings.", param="stop")
        options["stop"] = [*extra, *stop]
        if body.get("logit_bias"):
            try:
                options["logit_bias"] = {int(k): float(v) for k, v in body["logit_bias"].items()}
            except (AttributeError, TypeError, ValueError) as exc:
                raise BadRequest(400, "`logit_bias` maps token ids to numbers.", param="logit_bias") from exc
        if body.get("n", 1) != 1:
            raise BadRequest(400, "The local model writes one choice per request (`n` must be 1).", param="n")
        return options

    # -- generation

    async def acquire(self, keepalive: Callable[[], Awaitable[None]] | None = None) -> None:
        """Wait for the model; `keepalive` is awaited every few seconds meanwhile."""
        self.queued += 1
        waiter = asyncio.ensure_future(self.lock.acquire())
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=KEEPALIVE_SECONDS)
                if not waiter.done() and keepalive:
                    await keepalive()
        except BaseException:
            waiter.cancel()
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.lock.release()
            raise
        finally:
            self.queued -= 1

    @contextlib.asynccontextmanager
    async def generation(self, tokens: list[int], options: dict, stopping_criteria=None, keepalive=None):
        """Wait for the model, then generate: yields an async iterator of completion pieces
        ({"text", "finish_reason"}). The lock is released when the worker thread is done, not
        before: leaving the block early (a closed stream, a cancelled task) stops the thread at
        the next token, and only then is the model free for the next request in the queue."""
        from llama_cpp import StoppingCriteriaList

        await self.acquire(keepalive)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        end = object()
        criteria = StoppingCriteriaList([lambda _tokens, _logits: stop.is_set()])
        if stopping_criteria:
            criteria.extend(stopping_criteria)

        def put(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: the process is exiting
                stop.set()

        def work() -> None:
            stream = None
            try:
                stream = self.llama.create_completion(prompt=tokens, stream=True, stopping_criteria=criteria, **options)
                for chunk in stream:
                    if stop.is_set():
                        break
                    choice = chunk["choices"][0]
                    put({"text": choice.get("text") or "", "finish_reason": choice.get("finish_reason")})
            except Exception as exc:
                put(exc)
            finally:
                if stream is not None:
                    stream.close()
                put(end)

        try:
            future = loop.run_in_executor(self.executor, work)
        except BaseException:
            self.lock.release()
            raise
        future.add_done_callback(lambda _: self.lock.release())
        self.generations += 1

        async def pieces() -> AsyncIterator[dict]:
            while (item := await queue.get()) is not end:
                if isinstance(item, Exception):
                    log.error("generation failed: %s", item)
                    raise BadRequest(500, f"The local model failed: {item}", code="generation_failed")
                yield item

        try:
            yield pieces()
        finally:
            stop.set()


def _id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


class App:
    """The ASGI app around one LocalModel."""

    def __init__(self, model: LocalModel):
        self.model = model
        self.started = int(time.time())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path in ("/v1/models", "/models") and method == "GET":
            await self.json(send, 200, self.models())
        elif path == "/health" and method == "GET":
            await self.json(send, 200, {"status": "ok", "pid": os.getpid(), "model": self.model.name, "busy": self.model.lock.locked(),
                                        "queued": self.model.queued, "generations": self.model.generations})
        elif path in ("/v1/chat/completions", "/chat/completions") and method == "POST":
            await self.chat(receive, send)
        else:
            await self.json(send, 404, BadRequest(404, f"No route for {method} {scope['path']}.", code="not_found").body())

    def models(self) -> dict:
        return {"object": "list", "data": [{
            "id": self.model.name, "object": "model", "created": self.started, "owned_by": "chatsite",
            "context_window": self.model.n_ctx,
        }]}

    @staticmethod
    async def json(send, status: int, data: dict) -> None:
        body = json.dumps(data).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def chat(self, receive, send) -> None:
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            await self.json(send, 400, BadRequest(400, "The request body must be a JSON object.", code="invalid_json").body())
            return

        # The reply is written by one task while another listens for the client leaving: then the
        # writer is cancelled, which stops the generation (see LocalModel.generate).
        writer = asyncio.ensure_future(self.reply(body, send))
        listener = asyncio.ensure_future(self.disconnected(receive))
        try:
            await asyncio.wait({writer, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, listener):
                task.cancel()
            results = await asyncio.gather(writer, listener, return_exceptions=True)
        if isinstance(results[0], Exception) and not isinstance(results[0], OSError):
            log.error("the reply failed", exc_info=results[0])

    @staticmethod
    async def disconnected(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def reply(self, body: dict, send) -> None:
        model = self.model
        try:
            if body.get("model") not in (None, model.name):
                raise BadRequest(404, f"The model '{body.get('model')}' is not served here (only '{model.name}').",
                                 code="model_not_found", param="model")
            tokens, stop, criteria = model.prompt(body.get("messages"))
            options = model.options(body, len(tokens), stop)
        except BadRequest as exc:
            await self.json(send, exc.status, exc.body())
            return
        completion_id, created = _id(), int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self.stream(send, tokens, options, criteria, completion_id, created, include_usage)
            return

        text, finish_reason = "", None
        try:
            async with model.generation(tokens, options, criteria) as pieces:
                async for piece in pieces:
                    text += piece["text"]
                    finish_reason = piece["finish_reason"] or finish_reason
        except BadRequest as exc:
            await self.json(send, exc.status, exc.body())
            return
        await self.json(send, 200, {
            "id": completion_id, "object": "chat.completion", "created": created, "model": model.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
            "usage": self.usage(len(tokens), model.count(text)),
        })

    async def stream(self, send, tokens, options, criteria, completion_id, created, include_usage) -> None:
        model = self.model

        async def event(data) -> None:
            payload = data if isinstance(data, str) else json.dumps(data)
            await send({"type": "http.response.body", "body": f"data: {payload}\n\n".encode(), "more_body": True})

        def chunk(delta: dict, finish_reason=None) -> dict:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})

        async def keepalive() -> None:
            await send({"type": "http.response.body", "body": b": queued\n\n", "more_body": True})

        text, finish_reason = "", None
        try:
            async with model.generation(tokens, options, criteria, keepalive) as pieces:
                await event(chunk({"role": "assistant", "content": ""}))
                async for piece in pieces:
                    finish_reason = piece["finish_reason"] or finish_reason
                    if piece["text"]:
                        text += piece["text"]
                        await event(chunk({"content": piece["text"]}))
            await event(chunk({}, finish_reason or "stop"))
            if include_usage:
                await event({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": model.name, "choices": [], "usage": self.usage(len(tokens), model.count(text))})
        except BadRequest as exc:  # once streaming, an error is the last event (OpenAI's way)
            await event(exc.body())
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit when the process that started this one is gone (killed outright, say), so that a
    server never outlives its site."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.warning("the site (pid %s) is gone: the local model's server exits", parent_pid)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def listen(host: str, port: int) -> socket.socket | None:
    """The listening socket, bound before the model loads: a second server on the same port
    gives up at once. None when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    sock.listen(128)  # connections queue here while the model loads
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--name", required=True, help="the model id clients use")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=0, help="context window in tokens (0: the model's own)")
    parser.add_argument("--default-max-tokens", type=int, default=None, help="when a request names none")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    if args.parent_pid:
        watch_parent(args.parent_pid)
    sock = listen(args.host, args.port)
    if sock is None:
        log.info("port %s is taken: another process serves the local model", args.port)
        return EXIT_PORT_TAKEN

    import uvicorn

    started = time.perf_counter()
    model = LocalModel(args.model, args.name, threads=args.threads, n_ctx=args.ctx, default_max_tokens=args.default_max_tokens)
    log.info("%s loaded in %.1f s; serving on http://%s:%s/v1 (%s threads, context %s tokens)",
             args.name, time.perf_counter() - started, args.host, args.port, args.threads, model.n_ctx)
    config = uvicorn.Config(App(model), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
