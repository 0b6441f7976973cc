"""python manage.py providers add|sync|list: upstream providers, scripted."""

from __future__ import annotations

import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from conversations.llm.client import UpstreamError
from conversations.models import Provider


class Command(BaseCommand):
    help = "Manage upstream providers (OpenAI-compatible servers) and import their models."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a provider and import its models.")
        add.add_argument("name")
        add.add_argument("--base-url", required=True, help="API root, e.g. https://api.openai.com/v1")
        add.add_argument("--api-key-env", metavar="VAR",
                         help="Name of the environment variable holding the API key (keeps it out of shell history).")
        add.add_argument("--no-sync", action="store_true", help="Do not contact the upstream now.")
        sync = sub.add_parser("sync", help="Import the provider's models (GET /models) as enabled models.")
        sync.add_argument("name")
        sub.add_parser("list", help="List providers and their models.")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_add(self, name, base_url, api_key_env=None, no_sync=False, **_):
        if Provider.objects.filter(name=name).exists():
            raise CommandError(f"A provider named {name!r} exists already (see `providers list`).")
        api_key = ""
        if api_key_env:
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                raise CommandError(f"The environment variable {api_key_env} is not set or empty.")
        with transaction.atomic():
            provider = Provider(name=name, base_url=base_url.rstrip("/"))
            provider.api_key = api_key
            try:
                provider.full_clean()
            except ValidationError as exc:
                # The URL's rules live in Provider.clean (http(s) only, no credentials).
                raise CommandError("; ".join(f"{k.replace('base_url', '--base-url')}: {' '.join(v)}"
                                             for k, v in exc.message_dict.items())) from exc
            provider.save()
            created = [] if no_sync else self._sync(provider)
        self.stdout.write(self.style.SUCCESS(f"Added provider {name} ({len(created)} models imported)."))
        for model in created:
            self.stdout.write(f"  {model.name}")

    def handle_sync(self, name, **_):
        provider = self._get(name)
        created = self._sync(provider)
        self.stdout.write(self.style.SUCCESS(f"{provider.name}: {len(created)} new models, {provider.models.count()} in all."))
        for model in created:
            self.stdout.write(f"  {model.name}")

    def handle_list(self, **_):
        providers = Provider.objects.prefetch_related("models")
        if not providers:
            self.stdout.write("No providers yet: python manage.py providers add NAME --base-url URL")
        for provider in providers:
            state = "enabled" if provider.enabled else "disabled"
            key = provider.api_key_mask or "no key"
            self.stdout.write(f"{provider.name}  {provider.base_url}  ({state}, key {key})")
            for model in provider.models.all():
                self.stdout.write(f"  {model.name}{'' if model.enabled else '  (disabled)'}")

    def _get(self, name) -> Provider:
        try:
            return Provider.objects.get(name=name)
        except Provider.DoesNotExist:
            raise CommandError(f"No provider named {name!r} (see `providers list`).") from None

    def _sync(self, provider: Provider):
        try:
            return provider.sync_models()
        except UpstreamError as exc:
            raise CommandError(f"Could not list the models of {provider.name}: {exc.message}") from exc
