"""API keys and prompt templates in the admin."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, Sum
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from conversations import audit
from conversations.gateway.templates import SLOT, render_messages, slots_of
from conversations.models import ApiKey, PromptTemplate
from conversations.models.gateway import KEY_STATES


def month_start():
    return timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(state, state.capitalize()) for state in KEY_STATES]

    def queryset(self, request, queryset):
        return queryset.in_state(self.value()) if self.value() in KEY_STATES else queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix_shown", "name", "owner", "status", "expires_at", "rpm", "tpm", "budget_total",
                    "budget_monthly", "spent_total", "spent_this_month", "created_at"]
    list_filter = [StatusFilter, ("owner", admin.RelatedOnlyFieldListFilter), "expires_at"]
    list_select_related = ["owner"]
    search_fields = ["prefix", "name", "owner__username", "owner__email"]
    autocomplete_fields = ["owner"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke", "rotate"]
    fieldsets = [
        (None, {"fields": ["owner", "name", "expires_at"]}),
        ("Models", {"fields": ["default_model", "allowed_models"],
                    "description": "No allowed model selected: every model the owner may use."}),
        ("Limits", {"fields": ["rpm", "tpm", "budget_total", "budget_monthly"]}),
    ]
    readonly_on_change = ["prefix", "created_at", "revoked_at", "spent_total", "spent_this_month"]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.fieldsets
        return [("Key", {"fields": self.readonly_on_change}), *self.fieldsets]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_on_change if obj else []

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            spent=Sum("usage__cost"), spent_month=Sum("usage__cost", filter=Q(usage__created_at__gte=month_start())),
        )

    @admin.display(description="Key", ordering="prefix")
    def prefix_shown(self, key: ApiKey) -> str:
        return f"{key.prefix}…"

    @admin.display(description="Status")
    def status(self, key: ApiKey) -> str:
        return key.state

    @admin.display(description="Spent", ordering="spent")
    def spent_total(self, key: ApiKey):
        return round(key.spent or 0, 4)

    @admin.display(description="Spent this month", ordering="spent_month")
    def spent_this_month(self, key: ApiKey):
        return round(key.spent_month or 0, 4)

    def save_model(self, request, obj, form, change):
        if not change:
            # Kept on the instance for response_add only: never in the session or anywhere stored.
            obj.new_secret = obj.assign_secret()
            super().save_model(request, obj, form, change)
            audit.record(request.user, "create", obj, owner=obj.owner.username)
        else:
            super().save_model(request, obj, form, change)
            audit.record(request.user, "change", obj, fields=form.changed_data)

    def delete_model(self, request, obj):
        audit.record(request.user, "delete", obj)
        super().delete_model(request, obj)

    def response_add(self, request, obj, post_url_continue=None):
        """The new key, shown once, in the answer to the POST that made it."""
        return self.secrets_page(request, [(obj, obj.new_secret)], "Your new API key")

    def secrets_page(self, request, secrets: list[tuple[ApiKey, str]], title: str) -> TemplateResponse:
        context = {**self.admin_site.each_context(request), "secrets": secrets, "opts": self.model._meta,
                   "title": title}
        return TemplateResponse(request, "admin/conversations/apikey/created.html", context)  # never_cache: admin's

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at=None):
            key.revoke()
            audit.record(request.user, "revoke", key)
        self.message_user(request, "Revoked. Requests with these keys are refused from now on.", messages.SUCCESS)

    @admin.action(description="Rotate: a new secret, same settings")
    def rotate(self, request, queryset):
        rotated = []
        for key in queryset.select_related("owner"):
            rotated.append((key, key.rotate()))
            audit.record(request.user, "rotate", key)
        return self.secrets_page(request, rotated, "New secrets")


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = ["name", "description", "model", "messages", "variables"]
        widgets = {"messages": forms.Textarea(attrs={"rows": 10, "cols": 90}),
                   "variables": forms.Textarea(attrs={"rows": 4, "cols": 90})}

    def clean_messages(self):
        value = self.cleaned_data["messages"]
        if not isinstance(value, list) or not value:
            raise forms.ValidationError('A list of messages: [{"role": "system", "content": "..."}].')
        for i, message in enumerate(value):
            if not isinstance(message, dict) or message.get("role") not in {"system", "developer", "user", "assistant"} \
                    or not isinstance(message.get("content"), str):
                raise forms.ValidationError(f"Message {i + 1} needs a role (system, developer, user, assistant) and a content string.")
        return value

    def clean_variables(self):
        value = self.cleaned_data["variables"] or {}
        if isinstance(value, list):  # just names: no defaults
            value = {str(name): None for name in value}
        if not isinstance(value, dict):
            raise forms.ValidationError('Slots and their defaults: {"name": "default"} (null: no default).')
        return value

    def clean(self):
        cleaned = super().clean()
        messages_, variables = cleaned.get("messages"), cleaned.get("variables")
        if isinstance(messages_, list) and isinstance(variables, dict):
            used = {name for m in messages_ for name in SLOT.findall(m.get("content", ""))}
            if undeclared := sorted(used - set(variables)):
                self.add_error("variables", f"Declare the slots the messages use: {', '.join(undeclared)}.")
        return cleaned


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    form = PromptTemplateForm
    list_display = ["name", "description", "model", "slots", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["uuid", "preview"]
    fields = ["name", "uuid", "description", "model", "messages", "variables", "preview"]

    @admin.display(description="Slots")
    def slots(self, template: PromptTemplate) -> str:
        return ", ".join(slots_of(template)) or "—"

    @admin.display(description="Preview (slots filled with their defaults)")
    def preview(self, template: PromptTemplate):
        if not template.pk:
            return "Save to see the preview."
        defaults = template.variables if isinstance(template.variables, dict) else {}
        # Slots without a default are shown as their names, marked.
        shown = {name: defaults.get(name) if defaults.get(name) is not None else f"\x02{name}\x03" for name in slots_of(template)}
        rows = []
        for message in render_messages(template, shown):
            text = escape(message["content"]).replace("\x02", "<mark>{{").replace("\x03", "}}</mark>")
            rows.append(format_html("<p><strong>{}</strong>: {}</p>", message["role"], mark_safe(text)))  # noqa: S308
        usage = json.dumps({"template": template.name, "variables": {n: "…" for n in slots_of(template)}})
        return format_html("{}<p>On the API: <code>{}</code></p>", mark_safe("".join(rows)), usage)  # noqa: S308

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(request.user, "change" if change else "create", obj)


