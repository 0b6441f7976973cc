"""Who a member is at the company's identity provider (conversations.sso)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Identity(models.Model):
    """A member's account at the OIDC provider: its issuer and `sub`, the identifier the provider
    promises never to reassign. Found by it at every later sign-in, so an email address changed
    at the provider (to a colleague's, say) never opens another member's account; the email links
    an existing account only the first time."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="identity_unique_subject"),
            models.UniqueConstraint(fields=["user", "issuer"], name="identity_one_per_member_and_issuer"),
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.issuer}"
