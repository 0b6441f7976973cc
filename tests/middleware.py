"""Middleware for the servers the tests start (tests/live.py), never the site's own."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.contrib.contenttypes.models import ContentType
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def fresh_content_types(get_response):
    """A live server outlives the tests it serves, and the database flush after each test makes
    the content types again with new ids: a server that kept the old ones in its cache writes the
    admin's log entries against ids that are gone (a foreign-key error). Each request reads them
    afresh."""
    if iscoroutinefunction(get_response):
        async def middleware(request):
            ContentType.objects.clear_cache()
            return await get_response(request)
    else:
        def middleware(request):
            ContentType.objects.clear_cache()
            return get_response(request)
    return middleware
