"""Login throttling: failed logins counted per username and per address, refused for a cool-off.

Both login pages (/accounts/login/ and /admin/login/) go through Django's authentication forms,
which send `user_login_failed` with the request; the failures are counted here with the `limits`
library (a moving window of LOGIN_COOLOFF_SECONDS), in Redis when REDIS_URL is set so that every
process sees the same counts, in memory otherwise (one process, like the rest of that setup).
conversations.middleware.LoginThrottleMiddleware refuses a login POST while either count is at
its limit: a locked account cannot be guessed at, and one address cannot try many accounts.
A successful login clears its username's count (not the address's).

With Redis unreachable, logins are not throttled (and an error is logged): the sessions live in
the database, so people can still log in during a Redis outage rather than all being locked out.
"""

from __future__ import annotations

import functools
import logging
import math
import time

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

log = logging.getLogger("chatsite.security")


@functools.cache
def _limiter() -> MovingWindowRateLimiter:
    if settings.REDIS_URL:
        storage = storage_from_string(settings.REDIS_URL, key_prefix=f"{settings.REDIS_PREFIX}-login")
    else:
        storage = storage_from_string("memory://")
    return MovingWindowRateLimiter(storage)


def _subjects(request, username: str | None) -> list[tuple[RateLimitItemPerSecond, str, str]]:
    """(limit, kind, identity) for the username and for the address the attempt came from."""
    cooloff = settings.LOGIN_COOLOFF_SECONDS
    subjects = []
    if username:
        subjects.append((RateLimitItemPerSecond(settings.LOGIN_FAILURES_PER_USER, cooloff), "user",
                         username.strip().casefold()))
    if request is not None and (address := request.META.get("REMOTE_ADDR")):
        subjects.append((RateLimitItemPerSecond(settings.LOGIN_FAILURES_PER_ADDRESS, cooloff), "address", address))
    return subjects


def _fail_open(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RedisError:
            log.exception("login throttling is off while Redis is unreachable")
            return 0

    return wrapper


@_fail_open
def locked_for(request, username: str | None) -> int:
    """Seconds until this username or address may try again; 0 if they may now."""
    wait = 0.0
    for item, kind, identity in _subjects(request, username):
        if not _limiter().test(item, "login", kind, identity):
            stats = _limiter().get_window_stats(item, "login", kind, identity)
            wait = max(wait, stats.reset_time - time.time(), 1)
    return math.ceil(wait)


@receiver(user_login_failed, dispatch_uid="chatsite-login-throttle-failed")
@_fail_open
def count_failure(sender, credentials, request=None, **kwargs):
    for item, kind, identity in _subjects(request, credentials.get("username")):
        _limiter().hit(item, "login", kind, identity)


@receiver(user_logged_in, dispatch_uid="chatsite-login-throttle-succeeded")
@_fail_open
def clear_user(sender, request, user, **kwargs):
    item = RateLimitItemPerSecond(settings.LOGIN_FAILURES_PER_USER, settings.LOGIN_COOLOFF_SECONDS)
    _limiter().clear(item, "login", "user", user.get_username().casefold())


def reset() -> None:
    """Forget every count (the tests' fresh start; with Redis, only this site's prefix)."""
    _limiter().storage.reset()
