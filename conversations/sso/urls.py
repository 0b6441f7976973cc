from __future__ import annotations

from django.contrib.auth.views import PasswordResetView
from django.urls import path

from conversations.sso import views
from conversations.sso.mail import QuietPasswordResetForm

urlpatterns = [
    path("oidc/authenticate/", views.Start.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", views.Callback.as_view(), name="oidc_authentication_callback"),
    path("breakglass/<uidb64>/<token>/", views.breakglass, name="breakglass"),
    # Before django.contrib.auth.urls, so this one answers: a mail failure is one log line.
    path("password_reset/", views.password_reset(PasswordResetView.as_view(form_class=QuietPasswordResetForm)),
         name="password_reset"),
]
