"""python manage.py users invite NAME [--email E] [--admin]: a one-time set-password link."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from conversations import audit
from conversations.admin.people import invite, set_password_path


class Command(BaseCommand):
    help = "Invite team members: prints a link that lets them choose a password (once, within 3 days)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        new = sub.add_parser("invite", help="Create a user and print their set-password link.")
        new.add_argument("username")
        new.add_argument("--email", default="")
        new.add_argument("--admin", action="store_true", help="An admin (runs the admin panel) rather than a member.")
        new.add_argument("--site-url", default="http://127.0.0.1:8000", help="Where the site is served, for the link.")

    def handle(self, *args, action, username, email, admin, site_url, **options):
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} exists already.")
        user = invite(username, email, admin=admin)
        audit.record(None, "invite", user, admin=admin, via="command")
        link = site_url.rstrip("/") + set_password_path(user)
        self.stdout.write(f"Invited {username} ({'admin' if admin else 'member'}). Their set-password link:")
        self.stdout.write(link)
