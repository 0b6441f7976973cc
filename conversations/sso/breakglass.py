"""Break-glass links: like a password-reset token, so one login (which moves last_login) ends
it, and it lasts BREAKGLASS_SECONDS rather than days."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode


class BreakGlassTokens(PasswordResetTokenGenerator):
    key_salt = "chatsite.sso.breakglass"

    def check_token(self, user, token) -> bool:
        if not super().check_token(user, token):
            return False
        issued = base36_to_int(token.split("-")[0])
        return self._num_seconds(self._now()) - issued <= settings.BREAKGLASS_SECONDS


tokens = BreakGlassTokens()


def breakglass_path(user) -> str:
    return reverse("breakglass", args=[urlsafe_base64_encode(force_bytes(user.pk)), tokens.make_token(user)])
