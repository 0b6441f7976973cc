from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import get_user_model
from django.shortcuts import redirect
from django.utils.decorators import sync_and_async_middleware

SETUP_URL = "/setup/"
EXEMPT_PREFIXES = (SETUP_URL, "/static/", "/healthz", "/v1/")

_site_has_users = False  # once true, it stays true for the life of the process


def _exempt(path: str) -> bool:
    return path.startswith(EXEMPT_PREFIXES)


def reset() -> None:
    global _site_has_users
    _site_has_users = False


@sync_and_async_middleware
def FirstRunMiddleware(get_response):  # noqa: N802 - named like the class middleware it stands beside
    """On a site with no users yet, every page leads to creating the admin account."""
    global _site_has_users

    if iscoroutinefunction(get_response):

        async def middleware(request):
            global _site_has_users
            if not _site_has_users and not _exempt(request.path):
                _site_has_users = await get_user_model().objects.aexists()
                if not _site_has_users:
                    return redirect(SETUP_URL)
            return await get_response(request)

    else:

        def middleware(request):
            global _site_has_users
            if not _site_has_users and not _exempt(request.path):
                _site_has_users = get_user_model().objects.exists()
                if not _site_has_users:
                    return redirect(SETUP_URL)
            return get_response(request)

    return middleware
