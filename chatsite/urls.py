from django.contrib import admin
from django.urls import include, path

from conversations import views

urlpatterns = [
    path("", views.index, name="index"),
    path("c/new/", views.new_chat, name="new_chat"),
    path("c/<int:pk>/", views.conversation, name="conversation"),
    path("c/<int:pk>/delete/", views.delete_conversation, name="delete_conversation"),
    path("setup/", views.setup, name="setup"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
