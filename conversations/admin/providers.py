"""Providers and models in the admin: keys write-only, connection tests, model sync, prices."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db.models import Count

from conversations import audit, local
from conversations.llm.client import UpstreamError
from conversations.local import provision
from conversations.models import Model, Provider


def outcome(exc: UpstreamError) -> str:
    """What went wrong, by status only: the upstream's body may echo our key or anything else."""
    if exc.upstream_status:
        refused = " (it refused the API key)" if exc.upstream_status in (401, 403) else ""
        return f"HTTP {exc.upstream_status}{refused}"
    return {503: "could not connect", 504: "timed out"}.get(exc.status, "not an OpenAI-compatible model list")


class ProviderForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False, strip=True, label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")

    class Meta:
        model = Provider
        fields = ["name", "base_url", "enabled", "timeout"]

    def save(self, commit=True):
        provider = super().save(commit=False)
        if self.cleaned_data.get("api_key"):
            provider.api_key = self.cleaned_data["api_key"]
        elif self.cleaned_data.get("clear_api_key"):
            provider.api_key = ""
        if commit:
            provider.save()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "base_url", "enabled", "key", "model_count", "timeout"]
    list_filter = ["enabled"]
    search_fields = ["name", "base_url"]
    actions = ["test_connection", "sync_models"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(model_count=Count("models"))

    @admin.display(description="API key")
    def key(self, provider: Provider) -> str:
        return provider.api_key_mask or "—"

    @admin.display(description="Models", ordering="model_count")
    def model_count(self, provider: Provider) -> int:
        return provider.model_count

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return [*fields, "local_model"] if obj is not None and provision.is_builtin(obj) else fields

    @admin.display(description="Local model")
    def local_model(self, provider: Provider) -> str:
        """The embedded model's install: being prepared, failed and why, or ready."""
        return local.status().explanation

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changed = [f for f in form.changed_data if f != "api_key"] + (["api_key"] if form.cleaned_data.get("api_key") else [])
        audit.record(request.user, "change" if change else "create", obj, fields=changed)

    def delete_model(self, request, obj):
        audit.record(request.user, "delete", obj)
        super().delete_model(request, obj)

    @admin.action(description="Test connection (GET /models)")
    def test_connection(self, request, queryset):
        for provider in queryset:
            started = time.perf_counter()
            try:
                found = async_to_sync(provider.afetch_models)()
            except UpstreamError as exc:
                latency = (time.perf_counter() - started) * 1000
                self.message_user(request, f"{provider.name}: failed: {outcome(exc)}, {latency:.0f} ms.", messages.ERROR)
            else:
                latency = (time.perf_counter() - started) * 1000
                self.message_user(request, f"{provider.name}: OK, {len(found)} models, {latency:.0f} ms.", messages.SUCCESS)

    @admin.action(description="Sync models (import new ones)")
    def sync_models(self, request, queryset):
        for provider in queryset:
            try:
                created = provider.sync_models()
            except UpstreamError as exc:
                self.message_user(request, f"{provider.name}: could not list models: {outcome(exc)}.", messages.ERROR)
                continue
            audit.record(request.user, "sync", provider, created=[m.name for m in created])
            names = ", ".join(m.name for m in created) or "none"
            self.message_user(request, f"{provider.name}: {len(created)} new models ({names}).", messages.SUCCESS)


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "provider", "enabled", "context_window", "input_price", "output_price",
                    "capabilities"]
    list_editable = ["enabled", "input_price", "output_price"]
    list_filter = ["enabled", "provider", "supports_vision", "supports_tools", "supports_reasoning"]
    list_select_related = ["provider"]
    search_fields = ["name", "display_name", "upstream_id"]
    filter_horizontal = ["groups"]
    actions = ["enable", "disable"]
    fieldsets = [
        (None, {"fields": ["provider", "upstream_id", "name", "display_name", "enabled", "context_window"]}),
        ("Prices (per million tokens)", {"fields": ["input_price", "output_price"]}),
        ("Capabilities", {"fields": ["supports_vision", "supports_tools", "supports_reasoning"]}),
        ("Who may use it", {"fields": ["groups"], "description": "No group selected: everyone."}),
    ]

    @admin.display(description="Capabilities")
    def capabilities(self, model: Model) -> str:
        names = [n for n, on in (("vision", model.supports_vision), ("tools", model.supports_tools),
                                 ("reasoning", model.supports_reasoning)) if on]
        return ", ".join(names) or "—"

    @admin.action(description="Enable the selected models")
    def enable(self, request, queryset):
        for model in queryset:  # save(), not update(): the gateway's caches hear of it
            model.enabled = True
            model.save(update_fields=["enabled"])

    @admin.action(description="Disable the selected models")
    def disable(self, request, queryset):
        for model in queryset:
            model.enabled = False
            model.save(update_fields=["enabled"])
