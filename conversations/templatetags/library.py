"""The conversation list in every page's sidebar (templates/conversations/library.html#list)."""

from __future__ import annotations

from django import template

from conversations.library import listing

register = template.Library()


@register.simple_tag(takes_context=True)
def sidebar_page(context) -> listing.Page | None:
    """The sidebar's first page, for the signed-in member."""
    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return None
    return listing.page(user)


@register.filter
def next_query(page: listing.Page, current_id: int | None = None) -> str:
    return page.next_query(current_id)
