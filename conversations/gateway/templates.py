"""Prompt templates: stored messages with {{slot}} placeholders, expanded before inference."""

from __future__ import annotations

import re
import uuid

from conversations import connections
from conversations.gateway import cache
from conversations.gateway.errors import GatewayError
from conversations.models import PromptTemplate

SLOT = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")


async def find_template(ref: str) -> PromptTemplate:
    template = await cache.aget_or_load(cache.templates, ref, lambda: connections.aquery(_load_template, ref))
    if template is None:
        raise GatewayError(404, f"The template '{ref}' does not exist.", code="template_not_found", param="template")
    return template


def _load_template(ref: str) -> PromptTemplate | None:
    query = PromptTemplate.objects.select_related("model")
    template = query.filter(name=ref).first()
    if template is None and _is_uuid(ref):
        template = query.filter(uuid=ref).first()
    return template


def render_messages(template: PromptTemplate, variables: dict) -> list[dict]:
    """The template's messages with every {{slot}} filled; a slot without a value is a 422."""
    defaults = template.variables if isinstance(template.variables, dict) else {}
    values = {str(k): str(v) for k, v in {**defaults, **(variables or {})}.items() if v is not None}

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise GatewayError(422, f"The template '{template.name}' needs a value for '{name}' in 'variables'.",
                               code="missing_variable", param=f"variables.{name}")
        return values[name]

    return [{**message, "content": SLOT.sub(fill, str(message.get("content", "")))} for message in template.messages]


def slots_of(template: PromptTemplate) -> list[str]:
    found = []
    for message in template.messages:
        for name in SLOT.findall(str(message.get("content", ""))):
            if name not in found:
                found.append(name)
    return found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
