"""The built-in provider "local" and its model "smollm2-135m", created on migrate.

Connected to post_migrate in ConversationsConfig.ready(). It creates the rows once, when LOCAL_MODEL
is on and the local model is installed, or being built (`make run` migrates while the build runs
in the background: the picker shows the model as being prepared), or failed to build (so the
picker and the admin say why); and otherwise leaves them to the admin: a model or
provider an admin disabled stays disabled, a model an admin deleted stays deleted (deleting the
provider "local" brings both back on the next migrate). Only the provider's address follows
LOCAL_MODEL_PORT, as long as it is still the built-in loopback one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.apps import apps as global_apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, router, transaction

from conversations import local
from conversations.local import state


def local_base_url() -> str:
    return f"http://127.0.0.1:{settings.LOCAL_MODEL_PORT}/v1"


def is_builtin(provider) -> bool:
    """The provider of the embedded server (whose state local.status() tells)."""
    return provider.base_url.rstrip("/") == local_base_url()


def status_of(model):
    """The local model's state.Status when `model` is the embedded one, else None."""
    if model.upstream_id != local.MODEL_NAME or not is_builtin(model.provider):
        return None
    return local.status()


def create_local_provider(sender=None, *, using: str = DEFAULT_DB_ALIAS, apps=global_apps, **kwargs) -> None:
    """post_migrate: the provider "local" with the model "smollm2-135m", if they are not there."""
    if local.status().state not in (state.READY, state.BUILDING, state.FAILED):
        return
    try:
        Provider = apps.get_model("conversations", "Provider")
        Model = apps.get_model("conversations", "Model")
    except LookupError:  # migrated backwards, past the tables
        return
    if not router.allow_migrate_model(using, Provider):
        return
    base_url = local_base_url()
    with transaction.atomic(using=using):
        provider = Provider.objects.using(using).filter(name=local.PROVIDER_NAME).first()
        if provider is None:
            provider = Provider.objects.using(using).create(name=local.PROVIDER_NAME, base_url=base_url, enabled=True)
            # The public name, unless an upstream's model already has it.
            name = local.MODEL_NAME
            if Model.objects.using(using).filter(name=name).exists():
                name = f"{local.PROVIDER_NAME}/{name}"
            Model.objects.using(using).create(
                provider=provider, upstream_id=local.MODEL_NAME, name=name, display_name=local.DISPLAY_NAME,
                context_window=local.CONTEXT_WINDOW, enabled=True,
            )
        elif provider.base_url != base_url and _is_builtin(provider, Model, using):
            provider.base_url = base_url
            provider.save(update_fields=["base_url"])


def _is_builtin(provider, Model, using: str) -> bool:
    """Still the embedded server's provider: on loopback, offering the local model."""
    return urlsplit(provider.base_url).hostname == "127.0.0.1" and (
        Model.objects.using(using).filter(provider=provider, upstream_id=local.MODEL_NAME).exists()
    )
