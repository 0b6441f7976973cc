"""A member's own choices for the site (set on /settings/), apart from the limits an admin sets
on their Profile."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Preferences(models.Model):
    class Theme(models.TextChoices):
        SYSTEM = "system", "System"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    theme = models.CharField(max_length=10, choices=Theme.choices, default=Theme.SYSTEM)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user}"

    @classmethod
    def theme_of(cls, user) -> str:
        """The theme to render for `user` (System for anyone who has not chosen, or is logged out)."""
        if user is None or not user.is_authenticated:
            return cls.Theme.SYSTEM
        return cls.objects.filter(user=user).values_list("theme", flat=True).first() or cls.Theme.SYSTEM
