"""One request through the gateway, for both front doors (the browser chat and /v1).

`plan()` decides: who is calling (a Caller), which models in which order (the model asked for,
the key's or the template's default, then the `models` fallbacks), each one the caller may use;
the template expanded; the limits checked. `stream()` and `complete()` carry it out: the next
model is tried when an upstream fails before its first token (429, 5xx, timeout, refused
connection), and every attempt has a usage row from its start (conversations.gateway.usage), a
stream cut short billed for what it made. A stream that ends without saying it is done (no
finish_reason, no [DONE]) is an error, not a reply: "truncated" in its usage row.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from conversations import connections
from conversations.gateway import cache, limits, usage
from conversations.gateway.errors import GatewayError
from conversations.gateway.templates import find_template, render_messages
from conversations.llm.client import Chunk, StreamTruncated, UpstreamError
from conversations.llm.client import complete_chat as upstream_complete
from conversations.llm.client import stream_chat as upstream_stream
from conversations.local.provision import status_of
from conversations.models import ApiKey, Model, Profile, UsageRecord

# Gateway extensions: never sent upstream (OpenAI itself refuses unknown parameters).
EXTENSIONS = {"template", "variables", "session_id", "models", "transforms"}


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass
class Caller:
    """Who is calling, through which door, and for what usage grouping."""

    user: object
    source: str  # "chat" or "api"
    api_key: ApiKey | None = None
    profile: Profile | None = None  # the member's own limits, if they have any
    session_id: str = ""
    request_id: str = field(default_factory=new_request_id)


@dataclass
class Plan:
    caller: Caller
    models: list[Model]  # in the order to try them
    body: dict  # what goes upstream, less "model"
    stream: bool
    wants_usage: bool  # the caller asked for usage in the stream
    reservation: limits.Reservation | None = None
    settled: list[UsageRecord] = field(default_factory=list)  # each attempt's usage, as settled


async def plan(caller: Caller, body: dict) -> Plan:
    """Everything decided before the upstream is called; raises GatewayError."""
    messages = list(body.get("messages") or [])
    template = None
    if body.get("template"):
        template = await find_template(str(body["template"]))
        messages = render_messages(template, body.get("variables") or {}) + messages
    if body.get("session_id"):
        caller.session_id = str(body["session_id"])
    names = _model_names(caller, body, template)
    models, not_ready = [], None
    for i, name in enumerate(names):
        try:
            models.append(await resolve_model(caller, name, param="model" if i == 0 else "models"))
        except GatewayError as exc:
            if exc.code != "model_not_ready":
                raise
            not_ready = not_ready or exc  # still being prepared: passed over, as one that is down would be
    if not models:
        raise not_ready
    upstream_body = {k: v for k, v in body.items() if k not in EXTENSIONS and k != "model"}
    upstream_body["messages"] = messages
    if body.get("transforms") is not None:
        upstream_body["transforms"] = body["transforms"]
    result = Plan(caller, models, upstream_body, stream=bool(body.get("stream")),
                  wants_usage=bool((body.get("stream_options") or {}).get("include_usage")))
    result.reservation = await limits.admit(caller, models[0], upstream_body)
    return result


def _model_names(caller: Caller, body: dict, template) -> list[str]:
    first = body.get("model")
    if not first and caller.api_key is not None and caller.api_key.default_model_name:
        first = caller.api_key.default_model_name
    if not first and template is not None and template.model_id:
        first = template.model.name
    fallbacks = [str(m) for m in body.get("models") or []]
    if not first and fallbacks:
        first = fallbacks.pop(0)
    if not first:
        raise GatewayError(422, "Missing required parameter: 'model' (this key has no default model).",
                           code="missing_required_parameter", param="model")
    names = [str(first)]
    names += [name for name in fallbacks if name not in names]
    return names


async def resolve_model(caller: Caller, name: str, *, param: str = "model") -> Model:
    """The enabled model of that public name, if this caller (and its key) may use it."""
    key = (getattr(caller.user, "pk", None), name)
    found = await cache.aget_or_load(cache.routes, key, lambda: connections.aquery(_lookup_model, caller.user, name))
    if isinstance(found, GatewayError):
        raise GatewayError(found.status, found.message, code=found.code, param=param)
    api_key = caller.api_key
    if api_key is not None and api_key.allowed_model_ids and found.pk not in api_key.allowed_model_ids:
        raise GatewayError(403, f"This API key may not use the model '{name}'.", code="model_not_allowed", param=param)
    # The embedded model while it is still being built (or failed to be): say so, not "unreachable".
    if (local_status := status_of(found)) is not None and not local_status.ready:
        raise GatewayError(503, local_status.explanation, code="model_not_ready", param=param,
                           retry_after=60 if local_status.state == "building" else None)
    return found


def _lookup_model(user, name: str) -> Model | GatewayError:
    # A model the member may not use is one that does not exist, as OpenAI says it: its existence
    # is not revealed (the same answer from /v1/models/{id}, the API and the chat).
    model = Model.objects.usable_by(user).select_related("provider").filter(name=name).first()
    if model is None:
        return GatewayError(404, f"The model '{name}' does not exist or you do not have access to it.",
                            code="model_not_found")
    return model


def _upstream_body(model: Model, body: dict, *, stream: bool) -> dict:
    request = {**body, "model": model.upstream_id}
    if "transforms" in request and not _takes_transforms(model):
        del request["transforms"]
    if stream:
        # Always asked for, to bill it; passed on to the caller only if it asked too.
        request["stream"] = True
        request["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        request.pop("stream_options", None)
        request["stream"] = False
    return request


def _takes_transforms(model: Model) -> bool:
    # `transforms` is OpenRouter's; other upstreams refuse parameters they do not know.
    return (urlsplit(model.provider.base_url).hostname or "").endswith("openrouter.ai")


def _begin(plan: Plan, model: Model) -> usage.Entry:
    """An attempt's usage row, pending from its start (no wait: the writer inserts it)."""
    meter = usage.Meter(prompt_chars=usage.prompt_chars(plan.body))
    return usage.begin(meter, held=limits.held(plan.reservation), **_row_fields(plan.caller, model))


def _row_fields(caller: Caller, model: Model) -> dict:
    return dict(request_id=caller.request_id, source=caller.source, user=caller.user, api_key=caller.api_key,
                model_name=model.name, model=model, provider=model.provider, session_id=caller.session_id)


def _settle(plan: Plan, model: Model, entry: usage.Entry, status: str, error: str = "", error_kind: str = "") -> None:
    record = entry.meter.record(status=status, error=error[:2000], **_row_fields(plan.caller, model))
    usage.settle(entry, record, error_kind=error_kind)
    plan.settled.append(record)
    limits.settle(plan.caller, plan.reservation, record)


def _failure(exc: UpstreamError) -> str:
    """The usage status of a failed attempt."""
    return "truncated" if isinstance(exc, StreamTruncated) else "error"


def error_kind(exc: UpstreamError) -> str:
    """A failed attempt's kind, for the metrics (a few fixed values): the upstream's HTTP
    status, or what went wrong on the way."""
    if isinstance(exc, StreamTruncated):
        return "truncated"
    if exc.upstream_status:
        return f"http_{exc.upstream_status}"
    return {504: "timeout", 503: "connect"}.get(exc.status, "bad_response")


async def stream(plan: Plan) -> AsyncIterator[list[Chunk]]:
    """Stream the completion, in batches (what one network read brought): chunks with `model`
    set to the public name that served it."""
    for attempt, model in enumerate(plan.models):
        entry = _begin(plan, model)
        meter = entry.meter
        status, error, kind, started, stream_id = "ok", "", "", False, ""
        try:
            async for batch in upstream_stream(model.provider.upstream(), _upstream_body(model, plan.body, stream=True)):
                started = True
                stream_id = batch[-1].data.get("id") or stream_id
                if out := [chunk for chunk in batch if _relay(plan, model, meter, chunk)]:
                    yield out
            if plan.wants_usage and meter.usage is None:  # the upstream sent none: counted here
                yield [_usage_chunk(model, meter, stream_id)]
            return
        except UpstreamError as exc:
            status, error, kind = _failure(exc), exc.detail, error_kind(exc)  # the text: admins only (UpstreamError)
            if exc.retryable and not started and attempt + 1 < len(plan.models):
                continue
            raise GatewayError.from_upstream(exc) from exc
        except BaseException as exc:  # cancelled, or closed early: nobody is reading any more
            status, error = "cancelled", exc.__class__.__name__
            raise
        finally:
            _settle(plan, model, entry, status, error, kind)


def _relay(plan: Plan, model: Model, meter: usage.Meter, chunk: Chunk) -> bool:
    """Meter a chunk and make it the caller's; False for the usage chunk it did not ask for."""
    meter.observe(chunk.data)
    chunk.set("model", model.name)
    if "usage" in chunk.data and not plan.wants_usage:
        if not chunk.data.get("choices"):
            return False
        chunk.pop("usage")
    return True


async def complete(plan: Plan) -> dict:
    """The whole completion at once (stream=false)."""
    for attempt, model in enumerate(plan.models):
        entry = _begin(plan, model)
        meter = entry.meter
        status, error, kind = "ok", "", ""
        try:
            response = await upstream_complete(model.provider.upstream(), _upstream_body(model, plan.body, stream=False))
            meter.observe(response)
            response["model"] = model.name
            if not response.get("usage"):
                prompt, completion, _, _ = meter.tokens()
                response["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}
            return response
        except UpstreamError as exc:
            status, error, kind = _failure(exc), exc.detail, error_kind(exc)  # the text: admins only (UpstreamError)
            if exc.retryable and attempt + 1 < len(plan.models):
                continue
            raise GatewayError.from_upstream(exc) from exc
        except BaseException as exc:
            status, error = "cancelled", exc.__class__.__name__
            raise
        finally:
            _settle(plan, model, entry, status, error, kind)
    raise AssertionError("unreachable: plan.models is never empty")


def _usage_chunk(model: Model, meter: usage.Meter, stream_id: str) -> Chunk:
    """The usage chunk an upstream did not send, made up as the last chunk of its stream (its id)."""
    prompt, completion, _, _ = meter.tokens()
    return Chunk({
        "id": stream_id or "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion.chunk", "created": int(time.time()), "model": model.name,
        "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    })
