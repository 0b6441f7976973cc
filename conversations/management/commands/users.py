"""python manage.py users invite NAME [--email E] [--admin]: a one-time set-password link,
emailed when the site sends mail, printed otherwise.
python manage.py users breakglass NAME: a one-time login link for a superuser (PASSWORD_LOGIN=0)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from conversations import audit
from conversations.admin.people import invitation_path, invite, send_invitation
from conversations.sso.breakglass import breakglass_path


class Command(BaseCommand):
    help = "Invite team members: prints a link that lets them choose a password (once, within 3 days)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        new = sub.add_parser("invite", help="Create a user and print their set-password link.")
        new.add_argument("username")
        new.add_argument("--email", default="")
        new.add_argument("--admin", action="store_true", help="An admin (runs the admin panel) rather than a member.")
        new.add_argument("--site-url", default="http://127.0.0.1:8000", help="Where the site is served, for the link.")
        glass = sub.add_parser("breakglass", help="Print a one-time login link for a superuser (works with PASSWORD_LOGIN=0).")
        glass.add_argument("username")
        glass.add_argument("--site-url", default="http://127.0.0.1:8000", help="Where the site is served, for the link.")

    def handle(self, *args, action, username, site_url, **options):
        if action == "breakglass":
            return self.breakglass(username, site_url)
        return self.invite(username, options["email"], options["admin"], site_url)

    def breakglass(self, username: str, site_url: str) -> None:
        user = get_user_model().objects.filter(username=username, is_active=True, is_superuser=True).first()
        if user is None:
            raise CommandError(f"No active superuser named {username!r} (manage.py createsuperuser makes one).")
        audit.record(None, "break-glass link", user, via="command")
        minutes = settings.BREAKGLASS_SECONDS // 60
        self.stdout.write(f"A login link for {username}: it works once, within {minutes} minutes.")
        self.stdout.write(site_url.rstrip("/") + breakglass_path(user))

    def invite(self, username: str, email: str, admin: bool, site_url: str) -> None:
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} exists already.")
        user = invite(username, email, admin=admin)
        audit.record(None, "invite", user, admin=admin, via="command")
        link = site_url.rstrip("/") + invitation_path(user)
        if send_invitation(user, link):
            self.stdout.write(f"Invited {username} ({'admin' if admin else 'member'}). Emailed their invitation to {email}.")
            return
        self.stdout.write(f"Invited {username} ({'admin' if admin else 'member'}). Their link:")
        self.stdout.write(link)
