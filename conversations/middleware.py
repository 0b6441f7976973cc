from __future__ import annotations

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.decorators import sync_and_async_middleware

from conversations import throttle

SETUP_URL = "/setup/"
EXEMPT_PREFIXES = (SETUP_URL, "/static/", "/healthz", "/metrics", "/v1/")

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


def _throttled(request):
    """A login POST while its username or address is locked out: the refusal page (429)."""
    if request.method != "POST" or request.path not in {reverse("login"), reverse("admin:login"), settings.LOGIN_URL}:
        return None
    wait = throttle.locked_for(request, request.POST.get("username"))
    if not wait:
        return None
    minutes = max(1, round(wait / 60))
    context = {"minutes": minutes, "login_url": request.path}
    response = render(request, "registration/throttled.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


@sync_and_async_middleware
def LoginThrottleMiddleware(get_response):  # noqa: N802 - named like the class middleware it stands beside
    """Refuses login attempts for a cool-off after repeated failures (conversations/throttle.py)."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            if request.method == "POST" and (refused := await sync_to_async(_throttled)(request)):
                return refused
            return await get_response(request)

    else:

        def middleware(request):
            return _throttled(request) or get_response(request)

    return middleware
