"""The admin panel, made for running a team's AI access: providers, models, keys, templates,
people, usage and the audit log. The site groups them (adminsite.py)."""

from conversations.admin import keys, people, providers, usage  # noqa: F401 - registers the admins
