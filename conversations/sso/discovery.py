"""The identity provider's endpoints, from `{OIDC_ISSUER}/.well-known/openid-configuration`.

This is the only place that talks to the provider outside mozilla-django-oidc's own token,
userinfo and JWKS requests; every failure to reach it is a `ProviderUnavailable`."""

from __future__ import annotations

import requests
from django.conf import settings
from django.core.cache import cache


class ProviderUnavailable(Exception):
    """The identity provider could not be reached or did not answer as an OpenID provider."""


def configured() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def endpoints() -> dict:
    """The discovery document, kept in the cache for OIDC_DISCOVERY_SECONDS (one small entry
    per issuer), so a sign-in costs no extra round trip."""
    key = f"sso:discovery:{settings.OIDC_ISSUER}"
    if document := cache.get(key):
        return document
    url = f"{settings.OIDC_ISSUER}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
            document[field]  # noqa: B018 - each must be there
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ProviderUnavailable(f"{url}: {exc}") from exc
    if document.get("issuer", "").rstrip("/") != settings.OIDC_ISSUER:
        raise ProviderUnavailable(f"{url} names another issuer: {document.get('issuer')!r}")
    cache.set(key, document, settings.OIDC_DISCOVERY_SECONDS)
    return document
