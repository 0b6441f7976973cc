"""The sign-in doors: start and finish single sign-on, and the break-glass link."""

from __future__ import annotations

import logging
from functools import wraps

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode
from django.views.decorators.http import require_http_methods
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from conversations import audit
from conversations.sso import discovery
from conversations.sso.backends import SignInRefused
from conversations.sso.breakglass import tokens

logger = logging.getLogger("chatsite.sso")


def back_to_login(request, text: str):
    messages.error(request, text)
    return redirect(settings.LOGIN_URL)


def unreachable(request, exc: Exception):
    logger.warning("SSO: the identity provider did not answer: %s", exc)
    return back_to_login(request, f"{settings.OIDC_NAME} cannot be reached right now, so you cannot "
                                  "sign in with it. Try again in a few minutes.")


@method_decorator(login_not_required, name="dispatch")
class Start(OIDCAuthenticationRequestView):
    """The "Sign in with …" button: off to the provider with state, nonce and a PKCE challenge."""

    def __init__(self, **kwargs):
        View.__init__(self, **kwargs)  # the endpoints come from discovery at request time

    def get(self, request):
        if not discovery.configured():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = discovery.endpoints()["authorization_endpoint"]
        except discovery.ProviderUnavailable as exc:
            return unreachable(request, exc)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


@method_decorator(login_not_required, name="dispatch")
class Callback(OIDCAuthenticationCallbackView):
    """Back from the provider: the library checks state, code (with the PKCE verifier), the ID
    token and nonce; every way that fails ends on the login page with a sentence, never a 500."""

    def get(self, request):
        if not discovery.configured():
            raise Http404("Single sign-on is not configured.")
        try:
            return super().get(request)
        except SignInRefused as refused:
            logger.info("SSO: refused: %s", refused)
            return back_to_login(request, str(refused))
        except requests.HTTPError as exc:
            if exc.response is not None and 400 <= exc.response.status_code < 500:
                # invalid_grant: the code expired or was used already, or the PKCE verifier is wrong.
                logger.warning("SSO: the provider refused the code: %s", exc)
                return back_to_login(request, f"{settings.OIDC_NAME} did not accept this sign-in (it may have "
                                              "expired or been used already). Please sign in again.")
            return unreachable(request, exc)
        except (requests.RequestException, discovery.ProviderUnavailable) as exc:
            return unreachable(request, exc)
        except (SuspiciousOperation, jwt.PyJWTError) as exc:  # state, nonce, signature, expiry
            logger.warning("SSO: rejected a callback: %s", exc)
            return back_to_login(request, "The sign-in could not be verified (it may have been started "
                                          f"in another browser or tab). Please sign in with {settings.OIDC_NAME} again.")

    def login_failure(self):
        return back_to_login(self.request, f"Signing in with {settings.OIDC_NAME} did not complete. Please try again.")


def password_reset(view):
    """Django's password reset, gone when local passwords are off (a new one would not work)."""

    @login_not_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.PASSWORD_LOGIN:
            raise Http404("Local passwords are turned off.")
        return view(request, *args, **kwargs)

    return wrapper


@login_not_required
@require_http_methods(["GET", "POST"])
def breakglass(request, uidb64: str, token: str):
    """A one-time, short-lived login link for a superuser, from `manage.py users breakglass`:
    the way in when the identity provider is down and local passwords are off."""
    try:
        user = get_user_model().objects.get(pk=force_str(urlsafe_base64_decode(uidb64)))
    except (ValueError, TypeError, OverflowError, get_user_model().DoesNotExist):
        user = None
    valid = user is not None and user.is_active and user.is_superuser and tokens.check_token(user, token)
    if request.method == "POST" and valid:
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # ends the link
        audit.record(user, "break-glass login", user)
        return redirect("/admin/")
    return render(request, "registration/breakglass.html", {"valid": valid, "who": user if valid else None},
                  status=200 if valid else 400)
