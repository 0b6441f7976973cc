"""Signing in: OpenID Connect single sign-on (mozilla-django-oidc, configured by discovery), who
may come in through it and with which groups, the switch that turns local passwords off with its
break-glass link, and the mail that password reset sends."""
