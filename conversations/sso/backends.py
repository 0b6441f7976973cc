"""Who may come in through single sign-on, and the gate that turns local passwords off.

The decisions live in `SSOBackend.get_or_create_user`: an existing account is found by the
provider's *verified* email only; a new one is created only for OIDC_ALLOWED_DOMAINS (never
with OIDC_INVITED_ONLY); a deactivated member is refused; groups and the admin role follow the
provider's claims on every sign-in. A refusal raises `SignInRefused`, whose text the sign-in
page shows."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from conversations import audit
from conversations.models import Identity
from conversations.sso import discovery

logger = logging.getLogger("chatsite.sso")


class SignInRefused(Exception):
    """The provider vouched for someone this site does not let in; the text says why."""


class PasswordBackend(ModelBackend):
    """First in AUTHENTICATION_BACKENDS, so that it is the one a password meets: Django's own
    check, unless PASSWORD_LOGIN is off. Either way a username and password end here
    (PermissionDenied stops Django from asking the backends after it), on the login page and
    the admin's alike; ModelBackend stays listed after it only so that sessions it made (the
    first-run page's, a break-glass link's) stay valid."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if password is None:
            return None
        if settings.PASSWORD_LOGIN and (user := super().authenticate(request, username, password, **kwargs)):
            return user
        raise PermissionDenied("Wrong username or password, or local passwords are off.")


def email_verified(claims: dict) -> bool:
    # Some providers send the boolean as a string.
    return claims.get("email_verified") in (True, "true", "True")


def group_names(claims: dict) -> set[str]:
    value = claims.get(settings.OIDC_GROUPS_CLAIM) if settings.OIDC_GROUPS_CLAIM else None
    if isinstance(value, str):
        value = [value]
    return {str(name)[:150] for name in value or [] if name}


class SSOBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with the endpoints from discovery and this site's rules."""

    def __init__(self, *args, **kwargs):
        # Django builds the backends for every request's session check: no settings checks or
        # network here (the parent's __init__ does both).
        self.UserModel = get_user_model()

    OIDC_RP_IDP_SIGN_KEY = None
    OIDC_OP_TOKEN_ENDPOINT = property(lambda self: discovery.endpoints()["token_endpoint"])
    OIDC_OP_USER_ENDPOINT = property(lambda self: discovery.endpoints()["userinfo_endpoint"])
    OIDC_OP_JWKS_ENDPOINT = property(lambda self: discovery.endpoints()["jwks_uri"])
    OIDC_RP_CLIENT_ID = property(lambda self: settings.OIDC_RP_CLIENT_ID)
    OIDC_RP_CLIENT_SECRET = property(lambda self: settings.OIDC_RP_CLIENT_SECRET)
    OIDC_RP_SIGN_ALGO = property(lambda self: settings.OIDC_RP_SIGN_ALGO)

    def authenticate(self, request, **kwargs):
        # Only the callback view passes a nonce; a password form never reaches the provider.
        if "nonce" not in kwargs or not discovery.configured():
            return None
        return super().authenticate(request, **kwargs)

    def get_user(self, user_id):
        return ModelBackend.get_user(self, user_id)  # checks is_active, which the library skips

    def verify_token(self, token, **kwargs):
        """Signature, expiry and nonce (the library), then issuer and audience, which it skips."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if str(payload.get("iss", "")).rstrip("/") != settings.OIDC_ISSUER or self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token was issued by another issuer or for another client.")
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        subject = str(payload.get("sub") or "")
        if not subject or str(claims.get("sub")) != subject:
            raise SuspiciousOperation("The userinfo is about someone other than the ID token.")
        # Someone who signed in before is found by their `sub`, whatever their email is now.
        identity = Identity.objects.select_related("user").filter(issuer=settings.OIDC_ISSUER, subject=subject).first()
        if identity is not None:
            if not identity.user.is_active:
                raise SignInRefused("This account is deactivated. Ask an admin to reactivate it.")
            return self.update_user(identity.user, claims)
        user = self._by_email_or_new(claims)
        # get_or_create: two first sign-ins at once link once.
        identity, _ = Identity.objects.get_or_create(issuer=settings.OIDC_ISSUER, subject=subject, defaults={"user": user})
        return self.update_user(identity.user, claims)

    def _by_email_or_new(self, claims):
        """The first sign-in: the account with that verified email (not linked to another identity
        at this provider), or a new one where that is allowed."""
        name = settings.OIDC_NAME
        email = str(claims.get("email") or "").strip()
        if not email or "@" not in email:
            raise SignInRefused(f"{name} did not share your email address, so you cannot be signed in. "
                                "Ask your administrator to release the email claim to Chatsite.")
        if not email_verified(claims):
            raise SignInRefused(f"{name} has not verified your email address ({email}), so it cannot be "
                                "used to sign in here.")
        users = list(self.UserModel.objects.filter(email__iexact=email)[:2])
        if len(users) > 1:
            raise SignInRefused(f"More than one account here uses {email}. Ask an admin to sort it out.")
        if users:
            user = users[0]
            if not user.is_active:
                raise SignInRefused("This account is deactivated. Ask an admin to reactivate it.")
            if Identity.objects.filter(user=user, issuer=settings.OIDC_ISSUER).exists():
                raise SignInRefused(f"The account here for {email} belongs to someone else at {name}. "
                                    "Ask an admin to sort it out.")
        else:
            domain = email.rsplit("@", 1)[1].lower()
            if settings.OIDC_INVITED_ONLY:
                raise SignInRefused(f"There is no account here for {email}. Ask an admin to invite you.")
            if domain not in settings.OIDC_ALLOWED_DOMAINS:
                raise SignInRefused(f"Accounts for {domain} addresses are not created here. "
                                    "Ask an admin to invite you.")
            user = self.create_user(claims)
        return user

    def create_user(self, claims):
        email = claims["email"].strip()
        base = str(claims.get("preferred_username") or email.split("@")[0])[:140] or "member"
        username, n = base, 1
        while self.UserModel.objects.filter(username=username).exists():
            n += 1
            username = f"{base}-{n}"
        user = self.UserModel(username=username, email=email, first_name=str(claims.get("given_name") or "")[:150],
                              last_name=str(claims.get("family_name") or "")[:150])
        user.set_unusable_password()
        user.save()
        audit.record(None, "sign-up", user, via="sso")
        logger.info("SSO: created %s for %s", username, email)
        return user

    @transaction.atomic
    def update_user(self, user, claims):
        """Groups and the admin role as the provider says, at every sign-in."""
        names = group_names(claims)
        if settings.OIDC_GROUPS_CLAIM:
            groups = [Group.objects.get_or_create(name=name)[0] for name in sorted(names)]
            user.groups.set(groups)
        if settings.OIDC_ADMIN_GROUP:
            admin = settings.OIDC_ADMIN_GROUP in names
            if user.is_superuser != admin or user.is_staff != admin:
                user.is_staff = user.is_superuser = admin
                user.save(update_fields=["is_staff", "is_superuser"])
                audit.record(None, "make admin" if admin else "make member", user, via="sso")
        return user
