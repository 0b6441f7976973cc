from __future__ import annotations

from django.contrib.auth.views import LoginView
from django.urls import include, path

from tests.oidc_provider import views

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("healthz", views.healthz),
    path("testing/users", views.put_user),
    path("testing/redirect-uris", views.add_redirect_uri),
]
