from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from conversations import checks  # noqa: F401 - registers the start-up checks
        from conversations.attachments import store
        from conversations.gateway import cache
        from conversations.local.provision import create_local_provider
        from conversations.sharing import signals  # noqa: F401 - a revoked reader's sockets close

        cache.connect_signals()  # an admin's change drops the gateway's cached keys and models
        store.connect_signals()  # an attachment's files go with its row

        # The built-in provider "local" (the embedded model), when it is installed.
        post_migrate.connect(create_local_provider, sender=self, dispatch_uid="conversations.local.provision")


class ChatsiteAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with the site of conversations/adminsite.py."""

    default = False  # named in INSTALLED_APPS; ConversationsConfig is this module's default
    default_site = "conversations.adminsite.ChatsiteAdminSite"
