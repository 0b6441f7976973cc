"""The admin site: Django's, with its menu grouped by what an admin does."""

from __future__ import annotations

from django.contrib import admin

# The menu, in sections: (section, [(app label, model name), ...]).
SECTIONS = [
    ("Gateway", [("conversations", "provider"), ("conversations", "model"), ("conversations", "apikey"),
                 ("conversations", "prompttemplate")]),
    ("Usage", [("conversations", "usagerecord"), ("conversations", "auditlog")]),
    ("People", [("auth", "user"), ("auth", "group")]),
]


class ChatsiteAdminSite(admin.AdminSite):
    site_header = "Chatsite administration"
    site_title = "Chatsite admin"
    index_title = "Run your team's AI access"

    def get_app_list(self, request, app_label=None):
        """The apps' models regrouped into SECTIONS (any model not named there keeps its app)."""
        apps = super().get_app_list(request, app_label)
        if app_label:
            return apps
        models = {(app["app_label"], m["object_name"].lower()): m for app in apps for m in app["models"]}
        grouped, placed = [], set()
        for name, members in SECTIONS:
            section_models = [models[key] for key in members if key in models]
            placed.update(key for key in members if key in models)
            if section_models:
                grouped.append({"name": name, "app_label": name.lower(), "app_url": "", "has_module_perms": True,
                                "models": section_models})
        for app in apps:
            rest = [m for m in app["models"] if (app["app_label"], m["object_name"].lower()) not in placed]
            if rest:
                grouped.append({**app, "models": rest})
        return grouped
