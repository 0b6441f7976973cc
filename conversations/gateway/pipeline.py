"""One request through the gateway: resolve the model, call the upstream, fall back, meter usage."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from conversations.gateway import usage
from conversations.gateway.errors import GatewayError
from conversations.llm.client import Upstream, UpstreamError
from conversations.llm.client import stream_chat as upstream_stream_chat
from conversations.models import ApiKey, Model


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass
class Caller:
    """Who is calling, through which door, and for what usage grouping."""

    user: object
    source: str  # "chat" or "api"
    api_key: ApiKey | None = None
    session_id: str = ""
    request_id: str = field(default_factory=new_request_id)


@dataclass(frozen=True)
class Route:
    """A model the caller may use, with the upstream that serves it."""

    model: Model

    @property
    def upstream(self) -> Upstream:
        provider = self.model.provider
        return Upstream(base_url=provider.base_url, api_key=provider.api_key, timeout=provider.timeout, name=provider.name)


async def resolve_route(caller: Caller, name: str, *, param: str = "model") -> Route:
    model = await Model.objects.select_related("provider").filter(name=name).afirst()
    if model is None or not (model.enabled and model.provider.enabled):
        raise GatewayError(404, f"The model '{name}' does not exist or is not enabled.", code="model_not_found", param=param)
    if not await Model.objects.usable_by(caller.user).filter(pk=model.pk).aexists():
        raise GatewayError(403, f"You are not allowed to use the model '{name}'.", code="model_not_allowed", param=param)
    return Route(model)


def _prompt_chars(body: dict) -> int:
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return total


async def stream_chat(caller: Caller, body: dict, model_names: list[str]) -> AsyncIterator[dict]:
    """Stream a chat completion: yields OpenAI chunks, `model` set to the public name that served.

    The models are tried in order: the next one when an upstream fails before its first chunk
    (429, 5xx, timeout, refused connection). Each attempt writes a usage record, a stream cut
    short (by an error or a cancelled caller) billed for what it generated."""
    routes = [await resolve_route(caller, name) for name in model_names]
    for attempt, route in enumerate(routes):
        request = {**body, "model": route.model.upstream_id, "stream": True,
                   "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        meter = usage.Meter(prompt_chars=_prompt_chars(body))
        status, error, started = "ok", "", False
        try:
            async for chunk in upstream_stream_chat(route.upstream, request):
                started = True
                meter.observe(chunk)
                chunk["model"] = route.model.name
                yield chunk
            return
        except UpstreamError as exc:
            status, error = "error", exc.message
            if exc.retryable and not started and attempt + 1 < len(routes):
                continue
            raise GatewayError.from_upstream(exc) from exc
        except BaseException as exc:  # cancelled or closed early: the caller stopped listening
            status, error = "cancelled", exc.__class__.__name__
            raise
        finally:
            usage.record(meter.record(
                request_id=caller.request_id, source=caller.source, user=caller.user, api_key=caller.api_key,
                model_name=route.model.name, model=route.model, provider=route.model.provider,
                session_id=caller.session_id, status=status, error=error,
            ))
