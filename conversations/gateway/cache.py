"""Per-process caches for what every gateway request looks up: keys, models, templates.

The hot path does no database round trip it can avoid. Entries live `GATEWAY_CACHE_SECONDS`
(2 s by default) and are dropped at once in this process when an admin changes a key, model,
provider, template, user or group; other processes see the change within those seconds.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save

_MISSING = object()


class TTLCache:
    def __init__(self):
        self._entries: dict = {}

    def get(self, key, default=_MISSING):
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return default

    def set(self, key, value) -> None:
        if len(self._entries) > 10_000:  # a flood of unknown keys must not grow it without end
            self._entries.clear()
        self._entries[key] = (time.monotonic() + settings.GATEWAY_CACHE_SECONDS, value)

    def clear(self) -> None:
        self._entries.clear()


api_keys = TTLCache()  # prefix -> ApiKey (owner and allowed model ids loaded) or None
routes = TTLCache()  # (user id, model name) -> Model or a GatewayError
templates = TTLCache()  # name or uuid -> PromptTemplate or None

MISSING = _MISSING


def clear_all(**kwargs) -> None:
    for cache in (api_keys, routes, templates):
        cache.clear()


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from conversations.models import ApiKey, Model, PromptTemplate, Provider

    for model in (ApiKey, Model, Provider, PromptTemplate, get_user_model(), Group):
        post_save.connect(clear_all, sender=model, dispatch_uid=f"gateway-cache-save-{model.__name__}")
        post_delete.connect(clear_all, sender=model, dispatch_uid=f"gateway-cache-delete-{model.__name__}")
    m2m_changed.connect(clear_all, dispatch_uid="gateway-cache-m2m")
