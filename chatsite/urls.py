from django.contrib import admin
from django.urls import include, path, re_path

from conversations import account, health, settings_page, views
from conversations.api import views as api
from conversations.attachments import views as attachments
from conversations.chatsettings import views as chat_settings
from conversations.library import views as library
from conversations.local import views as local_model
from conversations.observability.metrics import metrics_view
from conversations.search.views import search_page
from conversations.sharing import views as sharing
from conversations.transfer import views as transfer

urlpatterns = [
    path("", views.index, name="index"),
    path("c/new/", views.new_chat, name="new_chat"),
    path("c/<int:pk>/", views.conversation, name="conversation"),
    path("c/<int:pk>/delete/", views.delete_conversation, name="delete_conversation"),
    path("c/<int:pk>/rename/", library.rename_conversation, name="rename_conversation"),
    path("c/<int:pk>/settings/", chat_settings.chat_settings, name="chat_settings"),
    path("c/<int:pk>/organise/", library.organise_conversation, name="organise_conversation"),
    path("c/<int:pk>/share/", sharing.share_conversation, name="share_conversation"),
    path("c/<int:pk>/continue/", sharing.continue_conversation, name="continue_conversation"),
    path("shared/", sharing.shared_with_me, name="shared_with_me"),
    path("c/<int:pk>/attachments/", attachments.upload, name="upload_attachments"),
    path("attachments/<int:pk>/", attachments.attachment, name="attachment"),
    path("attachments/<int:pk>/thumbnail/", attachments.thumbnail, name="attachment_thumbnail"),
    path("attachments/<int:pk>/remove/", attachments.remove, name="remove_attachment"),
    path("conversations/", library.conversation_list, name="conversation_list"),
    path("archived/", library.archived, name="archived"),
    path("c/<int:pk>/export.<str:fmt>", transfer.export_conversation, name="export_conversation"),
    path("import/", transfer.import_conversations, name="import_conversations"),
    path("search/", search_page, name="search"),
    path("setup/", views.setup, name="setup"),
    path("local-model/notice/", local_model.notice, name="local_model_notice"),
    path("local-model/<int:pk>/label/", local_model.label, name="local_model_label"),
    path("settings/", settings_page.settings_page, name="settings"),
    path("settings/export.zip", transfer.export_all, name="export_all"),
    path("settings/keys/", account.api_keys, name="api_keys"),
    path("settings/keys/<int:pk>/revoke/", account.revoke_api_key, name="revoke_api_key"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("accounts/", include("conversations.sso.urls")),  # single sign-on, break-glass, reset mail
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("v1/chat/completions", api.chat_completions, name="api_chat_completions"),
    path("v1/models", api.models, name="api_models"),
    # (?s): an id or path with a newline in it is still the API's (a JSON 404, not Django's page).
    re_path(r"^v1/models/(?P<model_id>(?s:.+))\Z", api.model_detail, name="api_model"),
    re_path(r"^v1/(?P<path>(?s:.*))\Z", api.not_found),
]
