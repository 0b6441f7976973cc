"""Mail for signing in (EMAIL_URL): password reset and invitations through a real SMTP server
on loopback (aiosmtpd), and what happens when the mail server is down."""

from __future__ import annotations

import email
import json
import logging
import os
import re
import subprocess
import sys
from email.policy import default as email_policy
from io import StringIO

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command

from tests.live import ROOT, free_port

SMTP = "django.core.mail.backends.smtp.EmailBackend"


class Inbox:
    """aiosmtpd's handler: every message the server accepted, parsed."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email_policy))
        return "250 Message accepted"


@pytest.fixture
def smtp(settings):
    """A local SMTP server, and the site's mail going to it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.MAILERS = {"default": {"BACKEND": SMTP, "OPTIONS": {"host": "127.0.0.1", "port": controller.port, "timeout": 10}}}
    settings.EMAIL_DELIVERS = True
    yield inbox
    controller.stop()


@pytest.fixture
def mail_down(settings):
    """Mail set up, but nothing listens on the mail server's port."""
    settings.MAILERS = {"default": {"BACKEND": SMTP, "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "timeout": 10}}}
    settings.EMAIL_DELIVERS = True


def link_in(message, prefix: str) -> str:
    return re.search(rf"{re.escape(prefix)}/accounts/reset/\S+/", message.get_content()).group(0)


def test_forgot_password_mails_a_link_that_sets_a_new_one(client, alice, smtp):
    assert "Forgot password?" in client.get("/accounts/login/").content.decode()
    response = client.post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password_reset/done/"
    [message] = smtp.messages
    assert message["To"] == "alice@example.com"
    form = client.get(link_in(message, "http://testserver"), follow=True)
    client.post(form.redirect_chain[-1][0], {"new_password1": "a-fresh-long-password",
                                             "new_password2": "a-fresh-long-password"})
    assert client.login(username="alice", password="a-fresh-long-password")


def test_forgot_password_with_the_mail_server_down_logs_one_line_and_no_traceback(client, alice, mail_down, caplog):
    caplog.set_level(logging.INFO)
    response = client.post("/accounts/password_reset/", {"email": "alice@example.com"}, follow=True)
    assert response.status_code == 200 and "Check your email" in response.content.decode()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "Mail to alice@example.com not sent (ConnectionRefusedError): [Errno 111] Connection refused"]
    assert not any(r.exc_info for r in caplog.records)


def test_an_invitation_is_emailed_when_mail_is_set_up(admin_client, client, smtp):
    page = admin_client.post("/admin/auth/user/invite/", {"username": "dana", "email": "dana@example.com"}).content.decode()
    assert "We emailed their invitation to dana@example.com" in page
    assert "/accounts/reset/" not in page  # the link went to dana only
    [message] = smtp.messages
    assert message["To"] == "dana@example.com" and "Your username is dana." in message.get_content()
    form = client.get(link_in(message, "http://testserver"), follow=True)
    assert form.context["validlink"] is True


def test_an_invitation_shows_the_link_when_the_mail_server_is_down(admin_client, mail_down):
    page = admin_client.post("/admin/auth/user/invite/", {"username": "dana", "email": "dana@example.com"}).content.decode()
    assert re.search(r'value="http://testserver/accounts/reset/[^"]+"', page)


def test_the_users_command_emails_the_invitation(db, smtp):
    out = StringIO()
    call_command("users", "invite", "erin", "--email", "erin@example.com", stdout=out)
    assert "Emailed their invitation to erin@example.com" in out.getvalue()
    [message] = smtp.messages
    assert link_in(message, "http://127.0.0.1:8000")


def site_settings(**environ) -> dict:
    code = ("from django.conf import settings as s; import json; "
            "print(json.dumps({'mailers': s.MAILERS, 'delivers': s.EMAIL_DELIVERS}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "DJANGO_SETTINGS"))}
    out = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, check=True,
                         env={**env, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **environ},
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_email_url_sets_up_smtp_and_the_console_is_the_default():
    console = site_settings()
    assert console == {"mailers": {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend", "OPTIONS": {}}},
                       "delivers": False}
    smtp = site_settings(EMAIL_URL="smtp+tls://chat%40example.com:s3cret@mail.example.com:587")
    assert smtp["delivers"] is True
    assert smtp["mailers"]["default"] == {"BACKEND": SMTP, "OPTIONS": {
        "host": "mail.example.com", "port": 587, "username": "chat@example.com", "password": "s3cret",
        "use_tls": True, "use_ssl": False, "timeout": 10}}


def test_with_passwords_off_an_invitation_leads_to_the_sign_in_button(admin_client, smtp, settings):
    settings.PASSWORD_LOGIN = False
    admin_client.post("/admin/auth/user/invite/", {"username": "dana", "email": "dana@example.com"})
    [message] = smtp.messages
    assert re.search(r"Sign in here with your company account \(dana@example.com\):\s+http://testserver/accounts/login/\s",
                     message.get_content())
    assert "/accounts/reset/" not in message.get_content()
    assert admin_client.get("/accounts/password_reset/").status_code == 404
