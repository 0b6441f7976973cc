"""The audit log: who created, changed or revoked which key or provider, and when."""

from __future__ import annotations

from conversations.models import AuditLog


def record(actor, action: str, obj, **details) -> AuditLog:
    return AuditLog.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        object_type=obj._meta.model_name,
        object_repr=str(obj)[:200],
        details=details,
    )
