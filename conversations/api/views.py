"""POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id}: thin, over the gateway."""

from __future__ import annotations

import contextlib
import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse

from conversations import connections
from conversations.api.auth import api_endpoint, internal_error
from conversations.gateway import pipeline
from conversations.gateway.errors import GatewayError
from conversations.gateway.validation import too_deep, validate_chat_request
from conversations.models import Model

log = logging.getLogger("chatsite.api")


@api_endpoint("POST")
async def chat_completions(request):
    plan = await pipeline.plan(request.caller, validate_chat_request(await _json_body(request)))
    if not plan.stream:
        return JsonResponse(await pipeline.complete(plan))
    chunks = pipeline.stream(plan)
    try:
        # Up to the first chunk, failures (after every fallback) are real HTTP error statuses.
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    response = StreamingHttpResponse(_events(first, chunks, request.caller.request_id), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


async def _events(first, chunks, request_id: str):
    """Server-sent events; a failure once streaming is an error event, then [DONE]. If the
    client goes away, Django closes this generator, which closes the upstream request.

    Bytes, not text: Django would work out the response's charset (a header lookup and a regular
    expression) to encode each write."""
    async with contextlib.aclosing(chunks):
        try:
            if first is not None:
                yield _sse(first)
            async for batch in chunks:
                yield _sse(batch)
        except GatewayError as exc:
            yield f"data: {json.dumps(exc.as_dict())}\n\n".encode()
        except Exception:
            log.exception("/v1 request %s failed mid-stream", request_id)
            yield f"data: {json.dumps(internal_error(request_id).as_dict())}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _sse(batch) -> bytes:
    """One write for the chunks of one upstream read."""
    return "".join(f"data: {chunk.json()}\n\n" for chunk in batch).encode()


async def _json_body(request):
    """The body, read now that the key is known good (conversations.api.handler), and parsed as
    strict JSON: NaN and Infinity are not JSON."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # API_MAX_BODY_BYTES
    try:
        reader = getattr(request, "body_reader", None)
        raw = await reader.read(limit) if reader is not None else request.body
    except RequestDataTooBig:
        raise GatewayError(413, f"The request body is larger than {limit} bytes.", code="request_too_large") from None
    try:
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(400, "The request body is not valid JSON.", code="invalid_json") from None


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


@api_endpoint("GET")
async def models(request):
    visible = await connections.aquery(lambda: list(_visible_models(request.caller)))
    return JsonResponse({"object": "list", "data": [_model_object(m) for m in visible]})


@api_endpoint("GET")
async def model_detail(request, model_id: str):
    # The chat's own rule (pipeline.resolve_model), so both doors say the same about a model.
    return JsonResponse(_model_object(await pipeline.resolve_model(request.caller, model_id)))


def _visible_models(caller):
    models = Model.objects.usable_by(caller.user).select_related("provider")
    if caller.api_key.allowed_model_ids:
        models = models.filter(pk__in=caller.api_key.allowed_model_ids)
    return models.order_by("name")


@api_endpoint("GET", "POST", "PUT", "PATCH", "DELETE")
async def not_found(request, path: str):
    raise GatewayError(404, f"There is no /v1/{path} here: this gateway serves /v1/chat/completions and /v1/models.",
                       code="unknown_url")


def _model_object(model: Model) -> dict:
    return {"id": model.name, "object": "model", "created": int(model.created_at.timestamp()), "owned_by": model.provider.name}
