"""What the gateway needs to decide who may call what at what cost: keys, templates, usage."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

KEY_PREFIX = "cs-"
PREFIX_CHARS = 8  # the visible part after "cs-", unique, used to look a key up


def hash_secret(key: str) -> str:
    # Keys are 40+ random characters: a fast hash is enough, a slow one would only slow every call.
    return hashlib.sha256(key.encode()).hexdigest()


# Whether a key is usable: decided here only, by `ApiKey.state` (one key) and the ApiKeyQuerySet
# methods (the same rule in SQL), for the API, the admin, the command and the members' page.
ACTIVE, REVOKED, EXPIRED, OWNER_INACTIVE = "active", "revoked", "expired", "owner inactive"
KEY_STATES = [ACTIVE, REVOKED, EXPIRED, OWNER_INACTIVE]


class ApiKeyQuerySet(models.QuerySet):
    def in_state(self, state: str):
        not_revoked = models.Q(revoked_at=None)
        expired = models.Q(expires_at__lte=timezone.now())
        owner_active = models.Q(owner__is_active=True)
        return self.filter({
            ACTIVE: not_revoked & ~expired & owner_active,
            REVOKED: ~not_revoked,
            EXPIRED: not_revoked & expired,
            OWNER_INACTIVE: not_revoked & ~expired & ~owner_active,
        }[state])

    def active(self):
        """Usable keys: not revoked, not expired, their owner active."""
        return self.in_state(ACTIVE)


class ApiKey(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    default_model = models.ForeignKey(
        "conversations.Model", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    allowed_models = models.ManyToManyField(
        "conversations.Model", blank=True, related_name="+", help_text="Empty: every model the owner may use."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute.")
    budget_total = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    budget_monthly = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name or 'key'} ({self.prefix}…)"

    @classmethod
    def issue(cls, owner, **fields) -> tuple[ApiKey, str]:
        """Create a key and return it with its secret, which is shown this once and never stored."""
        api_key = cls(owner=owner, **fields)
        secret = api_key.assign_secret()
        api_key.save()
        return api_key, secret

    def assign_secret(self) -> str:
        """A new secret (and prefix) for this key, not saved yet; returns the secret."""
        self.prefix = KEY_PREFIX + secrets.token_hex(PREFIX_CHARS // 2)
        secret = f"{self.prefix}_{secrets.token_urlsafe(30)}"
        self.secret_hash = hash_secret(secret)
        return secret

    def rotate(self) -> str:
        """Replace the secret, keeping everything else; the old one stops working at once."""
        secret = self.assign_secret()
        self.save(update_fields=["prefix", "secret_hash"])
        return secret

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    @staticmethod
    def prefix_of(key: str) -> str:
        return key.split("_", 1)[0]

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(key))

    @cached_property
    def allowed_model_ids(self) -> frozenset[int]:
        """Empty: any model the owner may use. The gateway loads it when it caches the key."""
        return frozenset(self.allowed_models.values_list("pk", flat=True))

    @property
    def default_model_name(self) -> str:
        return self.default_model.name if self.default_model_id else ""

    @property
    def state(self) -> str:
        """active, revoked, expired or "owner inactive" (reads the owner: select_related it)."""
        if self.revoked_at is not None:
            return REVOKED
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return EXPIRED
        return ACTIVE if self.owner.is_active else OWNER_INACTIVE

    @property
    def is_active(self) -> bool:
        return self.state == ACTIVE

    def refusal(self) -> tuple[str, str] | None:
        """Why a request with this key is refused, as (error code, message); None if usable."""
        match self.state:
            case "revoked":
                return "revoked_api_key", "This API key has been revoked."
            case "expired":
                return "expired_api_key", f"This API key expired on {self.expires_at:%Y-%m-%d %H:%M} UTC."
            case "owner inactive":
                return "inactive_user", "The owner of this API key is deactivated."
        return None


class Profile(models.Model):
    """A team member's limits, over the browser chat and their API keys together."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    can_create_api_keys = models.BooleanField(default=True, help_text="May create their own API keys.")
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute, chat and API.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute, chat and API.")
    budget_total = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    budget_monthly = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)

    def __str__(self) -> str:
        return f"limits of {self.user}"

    @property
    def has_limits(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.budget_total, self.budget_monthly))


class PromptTemplate(models.Model):
    """Stored messages with {{slot}} placeholders, expanded before inference."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True, default="")
    messages = models.JSONField(default=list, help_text='[{"role": "system", "content": "..."}]')
    variables = models.JSONField(
        default=dict, blank=True, help_text='Declared slots with their default values: {"name": "default"}.'
    )
    model = models.ForeignKey(
        "conversations.Model", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class UsageRecord(models.Model):
    class Source(models.TextChoices):
        API = "api"
        CHAT = "chat"
        TITLE = "title"  # a conversation's automatic title (conversations.library.titles)

    request_id = models.CharField(max_length=64, db_index=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    model_name = models.CharField(max_length=200, blank=True, default="")
    model = models.ForeignKey("conversations.Model", null=True, on_delete=models.SET_NULL, related_name="+")
    provider = models.ForeignKey("conversations.Provider", null=True, on_delete=models.SET_NULL, related_name="+")
    session_id = models.CharField(max_length=200, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(default=False, help_text="Counted here: the upstream sent no usage.")
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # pending (under way), ok, error, truncated, cancelled, interrupted (its process died).
    status = models.CharField(max_length=16, default="ok")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # While pending: the heartbeat of the process serving it (conversations.gateway.usage).
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Usage pages and budgets: one user's, one key's spend over a date range.
            models.Index(fields=["user", "created_at"], name="usage_user_date"),
            models.Index(fields=["api_key", "created_at"], name="usage_key_date"),
            # The admin's usage chart over all users.
            models.Index(fields=["created_at"], name="usage_date"),
            # The sweep for rows whose process died: only pending rows are indexed.
            models.Index(fields=["updated_at"], name="usage_pending_heartbeat", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model_name} {self.total_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_per_second(self) -> float | None:
        """The writing speed, from the first token to the last."""
        if self.ttft_ms is None or not self.duration_ms or self.duration_ms <= self.ttft_ms or not self.completion_tokens:
            return None
        return self.completion_tokens * 1000 / (self.duration_ms - self.ttft_ms)


class AuditLog(models.Model):
    """Who created, changed or revoked which key or provider, and when."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["-created_at"], name="audit_recent")]  # the log, newest first

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_repr}"
