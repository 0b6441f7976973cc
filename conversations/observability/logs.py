"""One log line per request and per reply (logger "chatsite.access").

    request request_id=req_… method=POST route=api_chat_completions status=200 user_id=3 key_prefix=cs-1a2b3c4d
            model=gpt-4o-mini provider=openai ttft_ms=212 prompt_tokens=12 completion_tokens=80 duration_ms=1830
    reply request_id=req_… user_id=3 key_prefix=- model=… provider=… status=ok ttft_ms=… … duration_ms=…

Readable text by default; with LOG_FORMAT=json each line is a JSON object with these fields
(python-json-logger). What is in them is chosen, never a dump: no message content, no header, no
path (a password-reset link's path holds its token; the route's name is logged instead), the key
by its visible prefix only.

`observe_http` wraps the site's ASGI HTTP app: it times the request, counts it by route and
status (metrics), and writes its line. What only deeper layers know reaches the line through a
context variable: the key and its owner (conversations.api.auth), the model, provider, tokens and
time to first token of the upstream attempt (`attempt_settled`, called by usage.settle).
"""

from __future__ import annotations

import logging
import secrets
import time
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction
from django.urls import resolve
from django.utils.decorators import sync_and_async_middleware
from django.utils.functional import empty

from conversations.observability import metrics

log = logging.getLogger("chatsite.access")

_request: ContextVar[dict | None] = ContextVar("chatsite_request", default=None)


def annotate(**fields) -> None:
    """Add to the line of the request being served (no-op outside one)."""
    if (info := _request.get()) is not None:
        info.update(fields)


def _emit(event: str, fields: dict) -> None:
    text = " ".join(f"{name}={'-' if value is None or value == '' else value}" for name, value in fields.items())
    log.info(f"{event} {text}", extra={"event": event, **fields})


def note_route(request) -> None:
    """The route's name as the request's own resolution found it, so that the line need not
    resolve the path again."""
    if (match := getattr(request, "resolver_match", None)) is not None:
        annotate(route=match.view_name)


def _route(path: str) -> str:
    """The route's name: a label of a few fixed values, and no secret a path may hold."""
    if path.startswith("/static/"):
        return "static"
    try:
        return resolve(path).view_name
    except Exception:  # Resolver404, or a path nothing could resolve
        return "unmatched"


async def observe_http(app, scope, receive, send) -> None:
    info: dict = {"status": 500}  # an app that raises before answering: the server answers 500
    token = _request.set(info)
    started = time.perf_counter()

    async def send_and_note(message):
        if message["type"] == "http.response.start":
            info["status"] = message["status"]
            for name, value in message.get("headers") or ():
                if name.lower() == b"x-request-id":
                    info["request_id"] = value.decode("latin-1")
        await send(message)

    try:
        await app(scope, receive, send_and_note)
    finally:
        _request.reset(token)
        route = info.get("route") or _route(scope["path"])
        metrics.REQUESTS.labels(route, scope["method"], str(info["status"])).inc()
        _emit("request", {
            "request_id": info.get("request_id") or "req_" + secrets.token_hex(12), "method": scope["method"],
            "route": route, "status": info["status"], "user_id": info.get("user_id"),
            "key_prefix": info.get("key_prefix"), "model": info.get("model"), "provider": info.get("provider"),
            "ttft_ms": info.get("ttft_ms"), "prompt_tokens": info.get("prompt_tokens"),
            "completion_tokens": info.get("completion_tokens"),
            "duration_ms": round((time.perf_counter() - started) * 1000),
        })


def attempt_settled(record, error_kind: str = "") -> None:
    """An upstream attempt's outcome (a UsageRecord, not saved yet): metrics for both doors, the
    reply's line for the chat, the request's line for /v1."""
    model, source = record.model_name, record.source
    provider = record.provider.name if record.provider_id else ""
    if record.ttft_ms is not None:
        metrics.TTFT.labels(model, source).observe(record.ttft_ms / 1000)
    if record.duration_ms is not None:
        metrics.DURATION.labels(model, source).observe(record.duration_ms / 1000)
    metrics.ATTEMPTS.labels(model, provider, source, record.status).inc()
    metrics.TOKENS.labels(model, provider, "in").inc(record.prompt_tokens)
    metrics.TOKENS.labels(model, provider, "out").inc(record.completion_tokens)
    if error_kind:
        metrics.UPSTREAM_ERRORS.labels(provider, error_kind).inc()
    fields = {"model": model, "provider": provider, "ttft_ms": record.ttft_ms,
              "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens}
    if source == "chat":
        _emit("reply", {"request_id": record.request_id, "user_id": record.user_id,
                        "key_prefix": None, "status": record.status, **fields, "duration_ms": record.duration_ms})
    else:
        annotate(**fields)


def _note_user(request) -> None:
    note_route(request)
    user = getattr(request, "user", None)
    wrapped = getattr(user, "_wrapped", user)  # a SimpleLazyObject until something reads it
    if wrapped is not empty and getattr(wrapped, "pk", None):
        annotate(user_id=wrapped.pk)


@sync_and_async_middleware
def RequestUserMiddleware(get_response):  # noqa: N802 - named like the class middleware it stands beside
    """The signed-in member's id on the request's line, if the request looked them up anyway
    (reading request.user here would cost pages a session and user query of their own), and the
    route the request resolved to."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            response = await get_response(request)
            _note_user(request)
            return response

    else:

        def middleware(request):
            response = get_response(request)
            _note_user(request)
            return response

    return middleware
