"""Usage and the audit log in the admin: filters, totals, and a chart of tokens and cost per day."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate

from conversations.models import AuditLog, UsageRecord

CHART_WIDTH, CHART_HEIGHT = 720, 140


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def bars(points: list[tuple[str, float]]) -> list[dict]:
    """Geometry of a bar chart drawn as SVG rects by the template (no chart library, no CDN)."""
    if not points:
        return []
    top = max(value for _, value in points) or 1
    width = CHART_WIDTH / len(points)
    return [{"x": round(i * width + 1, 1), "width": round(max(width - 2, 1), 1),
             "height": round(value / top * (CHART_HEIGHT - 20), 1),
             "y": round(CHART_HEIGHT - value / top * (CHART_HEIGHT - 20), 1), "label": label, "value": value}
            for i, (label, value) in enumerate(points)]


def daily(queryset) -> list[dict]:
    return list(queryset.order_by().annotate(day=TruncDate("created_at")).values("day").annotate(
        tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost"), requests=Count("id"),
    ).order_by("day"))


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "api_key", "source", "model_name", "session_id", "prompt_tokens",
                    "completion_tokens", "cost", "ttft_ms", "duration_ms", "status"]
    list_filter = ["source", "status", "estimated", ("user", admin.RelatedOnlyFieldListFilter),
                   ("api_key", admin.RelatedOnlyFieldListFilter), "model_name", "created_at"]
    list_select_related = ["user", "api_key"]
    search_fields = ["session_id", "request_id", "model_name", "user__username"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl") if hasattr(response, "context_data") else None
        if cl is None:
            return response
        records = cl.queryset
        totals = records.order_by().aggregate(requests=Count("id"), prompt=Sum("prompt_tokens"),
                                              completion=Sum("completion_tokens"), cost=Sum("cost"))
        days = daily(records)
        response.context_data.update({
            "totals": totals,
            "token_bars": bars([(str(d["day"]), d["tokens"] or 0) for d in days]),
            "cost_bars": bars([(str(d["day"]), float(d["cost"] or 0)) for d in days]),
            "chart_width": CHART_WIDTH, "chart_height": CHART_HEIGHT,
            "first_day": days[0]["day"] if days else None, "last_day": days[-1]["day"] if days else None,
        })
        return response


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_repr", "details"]
    list_filter = ["action", "object_type", ("actor", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["object_repr", "actor__username"]
    date_hierarchy = "created_at"
