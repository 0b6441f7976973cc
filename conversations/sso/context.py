from __future__ import annotations

from django.conf import settings

from conversations.sso import discovery


def sign_in(request) -> dict:
    """What the login page offers: the SSO button's name (when configured) and passwords."""
    return {"sso_name": settings.OIDC_NAME if discovery.configured() else "",
            "password_login": settings.PASSWORD_LOGIN}
