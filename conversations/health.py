"""/healthz: each dependency's state as JSON, for load balancers, orchestrators and scripts.

503 when a required dependency is down: the database, and Redis when REDIS_URL is set (the
gateway then refuses requests with limits, see conversations/gateway/limits.py). The local model
is reported but not required: the site serves its other models without it.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from conversations import local

log = logging.getLogger("chatsite")
REQUIRED = ("database", "redis")
PING_TIMEOUT_SECONDS = 2.0


@login_not_required
@require_GET
def healthz(request):
    checks = {"database": _check(_ping_database)}
    if settings.REDIS_URL:
        checks["redis"] = _check(_ping_redis)
    if settings.LOCAL_MODEL:
        checks["local_model"] = _local_model_state()
    ok = all(state == "ok" for name, state in checks.items() if name in REQUIRED)
    return JsonResponse({"status": "ok" if ok else "error", **checks}, status=200 if ok else 503)


def _check(ping) -> str:
    try:
        ping()
    except Exception as exc:  # whatever a dependency that went away raises
        log.warning("healthz: %s failed: %r", ping.__name__, exc)
        return f"unavailable ({exc.__class__.__name__})"  # details to the log, not to the public
    return "ok"


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _ping_redis() -> None:
    with redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=PING_TIMEOUT_SECONDS,
                              socket_timeout=PING_TIMEOUT_SECONDS) as client:
        client.ping()


def _local_model_state() -> str:
    if reason := local.unavailable_reason():
        return f"not installed: {reason}"
    supervisor = local.start()  # this process's supervisor, started with the site (idempotent)
    if supervisor is None:
        return "off"
    return {"ours": "ok", "busy": "starting"}.get(supervisor.probe(), "unavailable")
