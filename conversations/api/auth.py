"""The API's one decorator: a request id, the key checked, errors in OpenAI's shape.

Views behind `api_endpoint` find `request.caller` (a gateway Caller with the key and its owner)
and raise GatewayError for anything wrong; every response, errors included, carries
`X-Request-Id`. The key is checked before the view reads the body (conversations.api.handler).
"""

from __future__ import annotations

import logging
from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestAborted
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from conversations import connections
from conversations.gateway import cache
from conversations.gateway.errors import GatewayError
from conversations.gateway.pipeline import Caller, new_request_id
from conversations.models import ApiKey, Profile
from conversations.observability import logs

log = logging.getLogger("chatsite.api")


def error_response(exc: GatewayError, request_id: str | None = None) -> JsonResponse:
    response = JsonResponse(exc.as_dict(), status=exc.status)
    if exc.retry_after:
        response["Retry-After"] = str(exc.retry_after)
    if request_id:
        response["X-Request-Id"] = request_id
    return response


def internal_error(request_id: str) -> GatewayError:
    return GatewayError(500, f"The gateway failed on this request; quote {request_id} to the admin.", code="internal_error")


def unexpected_error_response(request, exc: Exception, request_id: str | None = None) -> JsonResponse:
    """An exception nothing else answered: still OpenAI's shape, with a request id to quote."""
    request_id = request_id or new_request_id()
    if isinstance(exc, Http404):  # no route: a path outside the API's, or one with a newline in it
        error = GatewayError(404, "There is no such path here: this gateway serves /v1/chat/completions and "
                                  "/v1/models.", code="unknown_url")
    else:
        log.error("/v1 request %s failed: %s %s", request_id, getattr(request, "method", ""),
                  getattr(request, "path", ""), exc_info=exc)
        error = internal_error(request_id)
    return error_response(error, request_id)


def api_endpoint(*methods: str):
    def decorator(view):
        @csrf_exempt
        @login_not_required
        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            request_id = new_request_id()
            logs.note_route(request)
            try:
                if request.method not in methods:
                    raise GatewayError(405, f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                                       code="method_not_allowed")
                key = await authenticate(request.headers.get("Authorization", ""))
                request.caller = Caller(user=key.owner, source="api", api_key=key, profile=_profile(key.owner),
                                        request_id=request_id)
                logs.annotate(user_id=key.owner_id, key_prefix=key.prefix)
                response = await view(request, *args, **kwargs)
            except GatewayError as exc:
                response = error_response(exc)
                if exc.status == 405:
                    response["Allow"] = ", ".join(methods)
            except RequestAborted:
                raise
            except Exception as exc:
                return unexpected_error_response(request, exc, request_id)
            response["X-Request-Id"] = request_id
            return response

        return wrapper

    return decorator


async def authenticate(header: str) -> ApiKey:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer <key>'.", code="missing_api_key")
    key = await _key_by_prefix(ApiKey.prefix_of(token))
    if key is None or not key.matches(token):
        raise GatewayError(401, "Incorrect API key provided.", code="invalid_api_key")
    if refusal := key.refusal():
        code, message = refusal
        raise GatewayError(401, message, code=code)
    return key


async def _key_by_prefix(prefix: str) -> ApiKey | None:
    return await cache.aget_or_load(cache.api_keys, prefix, lambda: connections.aquery(_load_key, prefix))


def _load_key(prefix: str) -> ApiKey | None:
    """The key with all that a request reads of it, in one hop to the database thread."""
    key = ApiKey.objects.select_related("owner", "owner__profile", "default_model").filter(prefix=prefix).first()
    if key is not None:
        key.allowed_model_ids = frozenset(key.allowed_models.values_list("pk", flat=True))
    return key


def _profile(user) -> Profile | None:
    try:
        return user.profile  # loaded with the key (select_related): no query
    except Profile.DoesNotExist:
        return None
