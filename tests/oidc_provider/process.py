"""The test provider as a process the tests start, and the steps of signing in at it."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx2 as httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.live import ROOT, Server, free_port


def rsa_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class OidcProvider(Server):
    """django-oauth-toolkit's OIDC provider on a free loopback port, with its own SQLite db."""

    def __init__(self, **env):
        # Not Server's __init__ (that starts the site); its start (polling /healthz), output and
        # stop serve this process as they are.
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.url}/o"
        self.client_id = "chatsite-" + secrets.token_hex(4)
        self.client_secret = secrets.token_urlsafe(24)
        self.dir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
               "PROVIDER_DB": str(Path(self.dir.name) / "provider.sqlite3"), "PROVIDER_RSA_KEY": rsa_key_pem(),
               "PYTHONUNBUFFERED": "1", **env}
        self.log = open(Path(self.dir.name) / "provider.log", "w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider.server", str(self.port), self.client_id, self.client_secret],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        super().stop()
        self.dir.cleanup()

    def settings(self, **more) -> dict:
        """The site's settings (as environment variables) for signing in here."""
        return {"OIDC_ISSUER": self.issuer, "OIDC_CLIENT_ID": self.client_id,
                "OIDC_CLIENT_SECRET": self.client_secret, **more}

    def allow_redirect(self, uri: str) -> None:
        httpx.post(f"{self.url}/testing/redirect-uris", json={"uri": uri}).raise_for_status()

    def person(self, username: str, password: str = "provider-password", **claims) -> str:
        """Someone who can sign in here, with the claims the provider asserts; their `sub`."""
        response = httpx.post(f"{self.url}/testing/users",
                              json={"username": username, "password": password, "claims": claims})
        response.raise_for_status()
        return response.json()["sub"]

    def authorize(self, authorize_url: str, username: str, password: str = "provider-password") -> str:
        """What a browser does at the provider: log in, consent (skipped), and come back.
        Returns the redirect back to the site (its callback URL with code and state)."""
        with httpx.Client(base_url=self.url, timeout=10) as browser:
            response = browser.get(authorize_url)
            assert response.status_code == 302 and "/login/" in response.headers["location"], response.text[:500]
            login = browser.get(response.headers["location"])
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
            response = browser.post(str(login.url), data={"username": username, "password": password,
                                                          "csrfmiddlewaretoken": token,
                                                          "next": login.url.params["next"]})
            assert response.status_code == 302, response.text[:500]
            response = browser.get(response.headers["location"])
            assert response.status_code == 302, response.text[:500]
            return response.headers["location"]
