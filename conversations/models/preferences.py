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
    # What a new chat starts with.
    default_model = models.ForeignKey(
        "conversations.Model", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    system_prompt = models.TextField(blank=True, default="")

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

    @classmethod
    def new_chat_defaults(cls, user) -> dict:
        """The model and system prompt a new chat of `user`'s starts with: their chosen defaults,
        while the model is still open to them, else the first model they may use."""
        from conversations.models.providers import Model

        usable = Model.objects.usable_by(user)
        mine = cls.objects.filter(user=user).first()
        model = None
        if mine and mine.default_model_id:
            model = usable.filter(pk=mine.default_model_id).first()
        return {"model": model or usable.first(), "system_prompt": mine.system_prompt if mine else ""}
