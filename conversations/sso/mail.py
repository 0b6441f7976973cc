"""Mail for signing in: password reset that fails quietly (one log line, no SMTP traceback)."""

from __future__ import annotations

import logging
import smtplib

from django.contrib.auth.forms import PasswordResetForm
from django.core.mail import send_mail
from django.template import loader

logger = logging.getLogger("chatsite.mail")


def send(subject: str, body: str, to: str) -> bool:
    """Send one plain-text mail; False (and one log line) when the mail server fails."""
    try:
        send_mail(subject, body, None, [to])
    except (OSError, smtplib.SMTPException) as exc:
        logger.error("Mail to %s not sent (%s): %s", to, type(exc).__name__, exc)
        return False
    return True


class QuietPasswordResetForm(PasswordResetForm):
    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email,
                  html_email_template_name=None):
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        send(subject, loader.render_to_string(email_template_name, context), to_email)
