"""python -m tests.oidc_provider.server PORT CLIENT_ID CLIENT_SECRET: migrate, register the
client, serve on 127.0.0.1:PORT (its database and RSA key come from the environment)."""

from __future__ import annotations

import os
import sys

import django
from django.core.management import call_command


def main() -> None:
    port, client_id, client_secret = sys.argv[1:4]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    from oauth2_provider.models import get_application_model

    get_application_model().objects.create(
        name="Chatsite", client_id=client_id, client_secret=client_secret, client_type="confidential",
        authorization_grant_type="authorization-code", algorithm="RS256", skip_authorization=True,
        redirect_uris="",
    )
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, skip_checks=True)


if __name__ == "__main__":
    main()
