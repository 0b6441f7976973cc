"""Upstream providers (OpenAI-compatible servers) and the models they offer."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models

from conversations import encryption
from conversations.llm import client


class Provider(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    base_url = models.URLField(help_text="The OpenAI-compatible API root, e.g. https://api.openai.com/v1")
    # Fernet token of the API key; never the key itself (see conversations/encryption.py).
    api_key_encrypted = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)
    timeout = models.FloatField(default=300.0, help_text="Seconds to wait for the upstream to answer.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """http(s) only (no file:, ftp:), and no user:password@ (it would sit in clear, and in
        logs): the key goes in the API key field, where it is encrypted."""
        try:
            parts = urlsplit(self.base_url or "")
            has_credentials = bool(parts.username or parts.password or "@" in parts.netloc)
        except ValueError:
            raise ValidationError({"base_url": "Not a URL."}) from None
        if parts.scheme not in ("http", "https"):
            raise ValidationError({"base_url": "Use an http:// or https:// URL."})
        if has_credentials:
            raise ValidationError({"base_url": "No credentials in the URL: put the API key in its own field."})

    @property
    def api_key(self) -> str:
        return encryption.decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = encryption.encrypt(value) if value else ""

    @property
    def api_key_mask(self) -> str:
        """What pages may show of the key: its first and last few characters."""
        key = self.api_key
        if not key:
            return ""
        return f"{key[:3]}…{key[-4:]}" if len(key) > 10 else "…"

    def upstream(self) -> client.Upstream:
        return client.Upstream(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, name=self.name)

    async def afetch_models(self) -> list[dict]:
        """The upstream's own model list (GET /models); raises client.UpstreamError."""
        return await client.list_models(self.upstream())

    def sync_models(self) -> list[Model]:
        """Import the upstream's models as enabled Model rows; returns the new ones."""
        from asgiref.sync import async_to_sync

        known = set(self.models.values_list("upstream_id", flat=True))
        taken = set(Model.objects.values_list("name", flat=True))
        created = []
        for item in async_to_sync(self.afetch_models)():
            upstream_id = str(item["id"])
            if upstream_id in known:
                continue
            # The public name is the upstream's id, unless another provider already has it.
            name = upstream_id if upstream_id not in taken else f"{self.name}/{upstream_id}"
            created.append(Model.objects.create(provider=self, upstream_id=upstream_id, name=name))
            known.add(upstream_id)
            taken.add(name)
        return created


class ModelQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True, provider__enabled=True)

    def usable_by(self, user):
        """Enabled models open to everyone or to one of the user's groups."""
        qs = self.enabled()
        if user.is_superuser:
            return qs
        return qs.filter(models.Q(groups=None) | models.Q(groups__user=user)).distinct()


class Model(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    upstream_id = models.CharField(max_length=200, help_text="The model's id at the provider.")
    # The public id: what the picker, /v1/models and API callers use.
    name = models.CharField(max_length=200, unique=True, help_text="Public id (alias) used on /v1.")
    display_name = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    context_window = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens.")
    input_price = models.DecimalField(
        max_digits=12, decimal_places=4, default=0, help_text="Per million input tokens."
    )
    output_price = models.DecimalField(
        max_digits=12, decimal_places=4, default=0, help_text="Per million output tokens."
    )
    supports_vision = models.BooleanField(default=False)
    supports_tools = models.BooleanField(default=False)
    supports_reasoning = models.BooleanField(default=False)
    groups = models.ManyToManyField(
        Group, blank=True, related_name="chat_models", help_text="Empty: everyone may use it."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "upstream_id"], name="model_unique_upstream")
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def cost(self, prompt_tokens: int, completion_tokens: int):
        return (self.input_price * prompt_tokens + self.output_price * completion_tokens) / 1_000_000

