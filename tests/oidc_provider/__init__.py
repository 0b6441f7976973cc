"""A real OpenID Connect provider for the SSO tests: django-oauth-toolkit's OIDC support in a
small Django project of its own, run as its own process (see tests/oidc_provider/server.py)."""
