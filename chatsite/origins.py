"""The websocket's origin check: a page may open the chat socket only from the site itself.

Browsers send cookies with a websocket handshake to any site, so without this check another site
(or another port on the same host) could open a member's chat and read it. The Origin header must
name the site's own origin, scheme, host and port all compared (the handshake's Host, on the scheme
the request came in on; behind a TLS proxy, SECURE_PROXY_SSL_HEADER says it was https), or one of
CSRF_TRUSTED_ORIGINS, the same list Django's CSRF check trusts. The Host must be one of
ALLOWED_HOSTS, as for pages.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, the port made explicit; None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def _headers(scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _scheme(scope, headers: dict[str, str]) -> str:
    if proxy := getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        name, secure_value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower()
        if header in headers:
            return "https" if headers[header].split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def _trusted(origin: tuple[str, str, int]) -> bool:
    """One of CSRF_TRUSTED_ORIGINS, with Django's `https://*.example.com` subdomain wildcard."""
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, netloc = entry.partition("://")
        trusted = normalized(f"{scheme}://{netloc.removeprefix('*.')}")
        if trusted is None or (origin[0], origin[2]) != (trusted[0], trusted[2]):
            continue
        if origin[1] == trusted[1] or (netloc.startswith("*.") and origin[1].endswith("." + trusted[1])):
            return True
    return False


def allowed(scope) -> bool:
    headers = _headers(scope)
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed_hosts):
        return False
    origin = normalized(headers.get("origin", ""))
    if origin is None:
        return False  # browsers always send one; a handshake without it is not from a page
    return origin == normalized(f"{_scheme(scope, headers)}://{host}") or _trusted(origin)


class SameOriginValidator:
    """ASGI middleware: refuses a websocket handshake whose Origin is not the site's own."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
