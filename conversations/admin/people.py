"""Users in the admin: invite by a one-time link, admin or member, limits, deactivate."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from conversations import audit
from conversations.consumers import disconnect_user
from conversations.models import Profile
from conversations.sso import mail

User = get_user_model()
log = logging.getLogger("chatsite.admin")


@receiver(post_save, sender=User, dispatch_uid="chatsite-close-sockets-of-deactivated")
def close_sockets_of_deactivated(sender, instance, update_fields=None, **kwargs):
    """However a member is deactivated (this admin, the `users` command, the shell), their open
    chat sockets close, in every process. (Admin modules load in every process, commands too.)"""
    if instance.is_active or (update_fields is not None and "is_active" not in update_fields):
        return

    def send():
        try:
            async_to_sync(disconnect_user)(instance.pk)
        except Exception:  # the channel layer down: each socket still re-checks on its next action
            log.exception("could not close the chat sockets of deactivated user %s", instance.pk)

    transaction.on_commit(send)


def set_password_path(user) -> str:
    """A set-password link (Django's password reset): it works once, and expires after
    PASSWORD_RESET_TIMEOUT (3 days)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(user)])


def invitation_path(user) -> str:
    """Where an invitee starts: choosing a password, or (PASSWORD_LOGIN=0) the login page and
    its single sign-on button, where their verified email finds the account."""
    return set_password_path(user) if settings.PASSWORD_LOGIN else reverse("login")


def invitation_link(request, user) -> str:
    return request.build_absolute_uri(invitation_path(user))


def send_invitation(user, link: str) -> bool:
    """Email the invitation link when the site sends mail (EMAIL_URL); False when it did not,
    and the admin passes the link on."""
    if not (user.email and settings.EMAIL_DELIVERS):
        return False
    body = render_to_string("registration/invitation_email.txt",
                            {"user": user, "link": link, "password_login": settings.PASSWORD_LOGIN})
    return mail.send("You are invited to Chatsite", body, user.email)


def invite(username: str, email: str = "", *, admin: bool = False):
    user = User(username=username, email=email, is_staff=admin, is_superuser=admin)
    user.set_unusable_password()
    user.save()
    return user


class InviteForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    admin = forms.BooleanField(required=False, label="Admin", help_text="Admins run this panel; members chat.")

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.filter(username=username).exists():
            raise forms.ValidationError("A user with that username exists already.")
        return username


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    verbose_name = "limits"
    verbose_name_plural = "limits (over the chat and all their API keys)"
    fields = ["can_create_api_keys", "rpm", "tpm", "budget_total", "budget_monthly"]


admin.site.unregister(User)


@admin.register(User)
class ChatsiteUserAdmin(UserAdmin):
    inlines = [ProfileInline]
    list_display = ["username", "email", "role", "is_active", "last_login", "date_joined"]
    list_filter = ["is_superuser", "is_active", "groups"]
    actions = ["deactivate", "activate", "make_admin", "make_member"]
    change_list_template = "admin/auth/user/change_list_invite.html"

    @admin.display(description="Role", ordering="is_superuser")
    def role(self, user) -> str:
        return "admin" if user.is_superuser else "member"

    def get_urls(self):
        return [path("invite/", self.admin_site.admin_view(self.invite_view), name="auth_user_invite"),
                *super().get_urls()]

    def invite_view(self, request):
        if not self.has_add_permission(request):
            return redirect(reverse("admin:index"))
        form = InviteForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta,
                   "title": "Invite someone"}
        if request.method == "POST" and form.is_valid():
            user = invite(form.cleaned_data["username"], form.cleaned_data["email"], admin=form.cleaned_data["admin"])
            audit.record(request.user, "invite", user, admin=user.is_superuser)
            link = invitation_link(request, user)
            context |= {"invited": user, "link": link, "emailed": send_invitation(user, link)}
        return TemplateResponse(request, "admin/auth/user/invite.html", context)

    @admin.action(description="Deactivate (they can no longer log in or use their keys)")
    def deactivate(self, request, queryset):
        count = 0
        for user in queryset.exclude(pk=request.user.pk):
            user.is_active = False
            user.save(update_fields=["is_active"])
            audit.record(request.user, "deactivate", user)
            count += 1
        self.message_user(request, f"Deactivated {count} (never yourself).", messages.SUCCESS)

    @admin.action(description="Activate")
    def activate(self, request, queryset):
        for user in queryset:
            user.is_active = True
            user.save(update_fields=["is_active"])
            audit.record(request.user, "activate", user)

    @admin.action(description="Make admin")
    def make_admin(self, request, queryset):
        for user in queryset:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
            audit.record(request.user, "make admin", user)

    @admin.action(description="Make member")
    def make_member(self, request, queryset):
        for user in queryset.exclude(pk=request.user.pk):
            user.is_staff = user.is_superuser = False
            user.save(update_fields=["is_staff", "is_superuser"])
            audit.record(request.user, "make member", user)
