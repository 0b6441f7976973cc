"""python manage.py apikeys create|list|revoke: gateway API keys, scripted.

The key is printed once, alone on the last line of `create`; only its hash is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from conversations import audit
from conversations.models import ApiKey, Model


class Command(BaseCommand):
    help = "Create, list and revoke gateway API keys."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key; it is printed once, on the last line.")
        create.add_argument("--user", required=True, help="Username of the key's owner.")
        create.add_argument("--name", default="", help="A label, e.g. the program that uses it.")
        create.add_argument("--models", default="", help="Comma-separated models it may use (default: all the owner may).")
        create.add_argument("--default-model", default="", help="Used when a request names no model.")
        create.add_argument("--expires", default="", help="YYYY-MM-DD (end of that day, UTC) or an ISO date-time.")
        create.add_argument("--rpm", type=int, help="Requests per minute.")
        create.add_argument("--tpm", type=int, help="Tokens per minute.")
        create.add_argument("--budget", default="", help="Total budget, in the site's currency.")
        create.add_argument("--monthly-budget", default="", help="Budget per calendar month.")
        sub.add_parser("list", help="List keys (prefixes only: secrets are never stored).")
        revoke = sub.add_parser("revoke", help="Revoke a key, given whole or by its visible prefix.")
        revoke.add_argument("key")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, user, name, models, default_model, expires, rpm, tpm, budget, monthly_budget, **_):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user named {user!r}.")
        allowed = self._models(models)
        fields = {
            "name": name,
            "default_model": self._models(default_model)[0] if default_model else None,
            "expires_at": self._expiry(expires) if expires else None,
            "rpm": self._positive("--rpm", rpm),
            "tpm": self._positive("--tpm", tpm),
            "budget_total": self._amount("--budget", budget),
            "budget_monthly": self._amount("--monthly-budget", monthly_budget),
        }
        with transaction.atomic():
            api_key, secret = ApiKey.issue(owner, **fields)
            api_key.allowed_models.set(allowed)
            audit.record(None, "create", api_key, owner=owner.username, via="command")
        self.stdout.write(f"Created API key {api_key.prefix}… for {owner.username}. Copy it now: it is not shown again.")
        self.stdout.write(secret)

    def handle_list(self, **_):
        keys = ApiKey.objects.select_related("owner").order_by("owner__username", "-created_at")
        if not keys:
            self.stdout.write("No API keys yet: python manage.py apikeys create --user NAME")
        for key in keys:
            expires = f" expires {key.expires_at:%Y-%m-%d}" if key.expires_at else ""
            self.stdout.write(f"{key.prefix}  {key.owner.username:<16} {key.state:<8} {key.name}{expires}")

    def handle_revoke(self, key, **_):
        api_key = ApiKey.objects.filter(prefix=ApiKey.prefix_of(key.strip().rstrip("…"))).first()
        if api_key is None or ("_" in key and not api_key.matches(key.strip())):
            raise CommandError("No such API key (give the whole key or its prefix, as `apikeys list` shows it).")
        if api_key.revoked_at:
            self.stdout.write(f"{api_key.prefix} was already revoked on {api_key.revoked_at:%Y-%m-%d %H:%M}.")
            return
        api_key.revoke()
        audit.record(None, "revoke", api_key, via="command")
        self.stdout.write(self.style.SUCCESS(f"Revoked {api_key.prefix}."))

    def _models(self, names: str) -> list[Model]:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        found = {m.name: m for m in Model.objects.filter(name__in=wanted)}
        if missing := [n for n in wanted if n not in found]:
            raise CommandError(f"No model named {missing[0]!r} (see `providers list`).")
        return [found[n] for n in wanted]

    def _expiry(self, value: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CommandError(f"--expires {value!r} is not a date (YYYY-MM-DD).") from None
        if len(value) == 10:  # a date: valid through the end of that day
            parsed = datetime.combine(parsed.date(), time.max)
        if timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        if parsed <= timezone.now():
            raise CommandError("--expires is in the past.")
        return parsed

    def _positive(self, flag: str, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise CommandError(f"{flag} must be at least 1.")
        return value

    def _amount(self, flag: str, value: str) -> Decimal | None:
        if not value:
            return None
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise CommandError(f"{flag} {value!r} is not an amount.") from None
        if amount < 0:
            raise CommandError(f"{flag} cannot be negative.")
        return amount
