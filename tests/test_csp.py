"""The Content-Security-Policy: strict, with a fresh nonce, and templates that need nothing looser.
(tests/test_browser_csp.py drives every page under it in a real browser.)"""

from __future__ import annotations

import re

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_the_policy_is_strict_and_carries_a_fresh_nonce(client, alice):
    policies = [client.get("/accounts/login/")["Content-Security-Policy"] for _ in range(2)]
    policy = dict(part.strip().split(" ", 1) for part in policies[0].split(";"))
    assert policy["default-src"] == "'self'"
    assert re.fullmatch(r"'self' 'nonce-[\w+/=-]+'", policy["script-src"])
    assert policy["style-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in policies[0]
    assert policies[0] != policies[1]  # a new nonce per response


def test_no_template_has_inline_scripts_handlers_or_styles():
    """Inline code would need 'unsafe-inline': scripts come from static/js, styles from static/css."""
    found = []
    for template in settings.BASE_DIR.joinpath("templates").rglob("*.html"):
        text = template.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style\b",
                        r"javascript:", r"hx-on"):
            found += [f"{template.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert found == []


def test_both_login_pages_carry_the_policy(client, alice):
    assert "script-src 'self' 'nonce-" in client.get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in client.get("/admin/login/")["Content-Security-Policy"]
