"""Chatsite settings, read from the environment.

Every setting has a safe embedded default (SQLite under var/, the in-memory channel layer, local
memory cache) so that `make run` works on a fresh machine; production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS and DEBUG=0 (see README, "Settings").
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env.str("CHATSITE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_or_file(name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    if value := os.environ.get(name):
        return value
    if path := os.environ.get(f"{name}_FILE"):
        return Path(path).read_text().strip()
    return None


def generated_once(filename: str, make) -> str:
    """A value generated on first use and kept in var/, for the embedded default only."""
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env.bool("DEBUG", default=True)

SECRET_KEY = env_or_file("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = generated_once("secret_key", lambda: secrets.token_urlsafe(50))

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind a TLS-terminating proxy: HTTPS-only cookies, redirect to HTTPS, HSTS.
HTTPS = env.bool("CHATSITE_HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)

INSTALLED_APPS = [
    "daphne",
    "conversations.apps.ChatsiteAdminConfig",  # django.contrib.admin, with the grouped menu
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatsite.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",  # see "Security" below
    "conversations.middleware.LoginThrottleMiddleware",  # see "Security" below
    "conversations.middleware.FirstRunMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "conversations.observability.logs.RequestUserMiddleware",  # the member's id on the request's log line
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",  # csp_nonce, for the scripts that need one
                "conversations.settings_page.theme",  # the member's theme, on <html> (base.html)
            ],
        },
    },
]

# -- Database: SQLite (WAL) under var/ by default, PostgreSQL via DATABASE_URL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# A dead connection (database restarted, backend killed) is replaced before it is used.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE: writers queue on the lock instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # PostgreSQL: a pool of connections per process (psycopg_pool, through Django's own support),
    # the way Django recommends under ASGI: without it each websocket event's and each page's
    # database work opens and closes a connection (channels and Django close it after each use
    # when CONN_MAX_AGE is 0), and kept connections (CONN_MAX_AGE > 0) leak with each request
    # thread. "Closing" gives a connection back; the pool checks each one it hands out
    # (CONN_HEALTH_CHECKS), so a database restart costs no request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them (Django refuses both)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=20),
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- Channel layer and cache: in-process by default, Redis via REDIS_URL.
REDIS_URL = env.str("REDIS_URL", default="")
# Keeps test runs (and several sites on one Redis) from hearing each other.
REDIS_PREFIX = env.str("CHATSITE_REDIS_PREFIX", default="chatsite")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: a group_send is one PUBLISH, and nothing queues up for absent listeners;
            # tabs keep working in-process while Redis is away (conversations/chat/layer.py).
            "BACKEND": "conversations.chat.layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 1000}],
                "prefix": f"{REDIS_PREFIX}:",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# -- Provider API keys are encrypted with these (comma-separated, newest first; MultiFernet).
ENCRYPTION_KEYS = env.list("CHATSITE_ENCRYPTION_KEYS", default=[]) or (
    [k for k in (env_or_file("CHATSITE_ENCRYPTION_KEYS") or "").split(",") if k]
)
if not ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("CHATSITE_ENCRYPTION_KEYS must be set when DEBUG is off.")
    from cryptography.fernet import Fernet

    ENCRYPTION_KEYS = [generated_once("encryption_key", lambda: Fernet.generate_key().decode())]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"  # for collectstatic, if you want it; not needed to serve
STATIC_ROOT.mkdir(exist_ok=True)
# WhiteNoise serves straight from the app's static folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True

# -- Security (README, "Security"). Kept together in this block.
# HSTS (with CHATSITE_HTTPS): includeSubDomains and preload are commitments for the whole domain
# (preload is hard to undo), so they are off unless turned on here.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The deploy check warns about those two being off: they are off on purpose.
SILENCED_SYSTEM_CHECKS = [
    *(["security.W005"] if not SECURE_HSTS_INCLUDE_SUBDOMAINS else []),
    *(["security.W021"] if not SECURE_HSTS_PRELOAD else []),
]
# Content-Security-Policy (Django's own middleware): scripts only from this site's files (or with
# the page's nonce), no inline handlers, no eval; styles from files; images from the site (so a
# model's markdown cannot load a tracking image); the websocket and htmx to the site only.
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    # Chrome also applies form-action to the redirect after a form's POST: a sign-in or sign-out
    # that redirects to an identity provider needs that provider's origin in CSP_FORM_ACTION.
    "form-action": [CSP.SELF, *env.list("CSP_FORM_ACTION", default=[])],
    "frame-ancestors": [CSP.NONE],
}
if extra := env.list("CSP_REPORT_URI", default=[]):
    SECURE_CSP["report-uri"] = extra
# Login throttling (conversations/throttle.py), on /accounts/login/ and /admin/login/: after this
# many failed logins for one username, or from one address, within the cool-off, further attempts
# are refused until it has passed. Counted in Redis when REDIS_URL is set (all processes).
LOGIN_FAILURES_PER_USER = env.int("LOGIN_FAILURES_PER_USER", default=5)
LOGIN_FAILURES_PER_ADDRESS = env.int("LOGIN_FAILURES_PER_ADDRESS", default=20)
LOGIN_COOLOFF_SECONDS = env.int("LOGIN_COOLOFF_SECONDS", default=15 * 60)
# -- end of the security block

# -- Chat behaviour
CHAT_BATCH_SECONDS = env.float("CHAT_BATCH_SECONDS", default=0.05)  # one websocket frame per 50 ms
CHAT_SAVE_SECONDS = env.float("CHAT_SAVE_SECONDS", default=1.0)  # progress saved at least this often
# A "streaming" message not saved for this long belongs to a process that died: interrupted.
CHAT_STALE_SECONDS = env.float("CHAT_STALE_SECONDS", default=15.0)
# After a conversation's first reply a model names it (conversations.library.titles): this one, or
# the conversation's own when empty. CHAT_AUTO_TITLE=0 keeps the question's first words instead.
CHAT_AUTO_TITLE = env.bool("CHAT_AUTO_TITLE", default=True)
CHAT_TITLE_MODEL = env.str("CHAT_TITLE_MODEL", default="")
USAGE_FLUSH_SECONDS = env.float("USAGE_FLUSH_SECONDS", default=1.0)
# On SIGTERM, replies being written get this long to finish before they are saved as interrupted
# (conversations/lifecycle.py); `make serve` gives /v1 streams the same.
CHAT_SHUTDOWN_GRACE_SECONDS = env.float("CHAT_SHUTDOWN_GRACE_SECONDS", default=30.0)
CURRENCY = env.str("CHATSITE_CURRENCY", default="USD")  # of model prices and budgets
GATEWAY_CACHE_SECONDS = env.float("GATEWAY_CACHE_SECONDS", default=2.0)
# The /v1 API's largest request body (images as data URLs make bodies big).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=20 * 1024 * 1024)
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=10.0)
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=300.0)

# -- Attachments (conversations/attachments; README, "Attachments"): kept through Django's storage
# API in the storage named "attachments": a folder under var/ by default (ATTACHMENTS_DIR), or any
# storage backend given as JSON in ATTACHMENTS_STORAGE, e.g. S3 through django-storages:
# {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "chatsite-files"}}.
# They are only ever served through the site's own views, which check who may see them.
ATTACHMENTS_DIR = Path(env.str("ATTACHMENTS_DIR", default=str(VAR_DIR / "attachments")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": env.json("ATTACHMENTS_STORAGE", default={}) or {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(ATTACHMENTS_DIR)},
    },
}

# -- Logs: readable lines by default, one JSON object a line with LOG_FORMAT=json (python-json-logger).
# One line per request and per reply (logger "chatsite.access", conversations/observability/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s", "rename_fields": {"asctime": "time", "levelname": "level"}},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "text"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
    "loggers": {"chatsite": {"level": env.str("LOG_LEVEL", default="INFO")}},
}

# -- /metrics (Prometheus): with `Authorization: Bearer METRICS_TOKEN`, or from these addresses
# (comma-separated, networks allowed: 10.0.0.0/8). Neither set: nobody (404).
METRICS_TOKEN = env_or_file("METRICS_TOKEN") or ""
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])

# -- The embedded local model (conversations/local): a child process serves it on loopback.
LOCAL_MODEL = env.bool("LOCAL_MODEL", default=True)
LOCAL_MODEL_PORT = env.int("LOCAL_MODEL_PORT", default=8011)
# Generation threads: a few are enough for a 135M model, and leave the cores to the web processes.
LOCAL_MODEL_THREADS = env.int("LOCAL_MODEL_THREADS", default=max(1, min(4, (os.cpu_count() or 2) // 2)))

# -- Signing in and email (conversations/sso; README, "Single sign-on"). Kept last on purpose.
# OpenID Connect single sign-on through mozilla-django-oidc: on when OIDC_ISSUER and
# OIDC_CLIENT_ID are set. The endpoints come from {OIDC_ISSUER}/.well-known/openid-configuration
# (cached for OIDC_DISCOVERY_SECONDS); state, nonce and PKCE (S256) are always used.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env_or_file("OIDC_CLIENT_SECRET") or ""
OIDC_NAME = env.str("OIDC_NAME", default="single sign-on")  # the button: "Sign in with {OIDC_NAME}"
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGO", default="RS256")
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)  # seconds, each request to the provider
OIDC_DISCOVERY_SECONDS = env.int("OIDC_DISCOVERY_SECONDS", default=3600)
if OIDC_ISSUER:
    # The sign-in button is a form whose answer redirects to the provider, and Chrome applies the
    # policy's form-action to that redirect: the issuer's origin is allowed (an authorization
    # endpoint on another origin goes in CSP_FORM_ACTION).
    _issuer = urlsplit(OIDC_ISSUER)
    SECURE_CSP["form-action"] = [*SECURE_CSP["form-action"], f"{_issuer.scheme}://{_issuer.netloc}"]
# Who may come in: new accounts only for these email domains (none by default), or none at all
# with OIDC_INVITED_ONLY (then only people with an account, e.g. invited, linked by verified email).
OIDC_ALLOWED_DOMAINS = [domain.lower() for domain in env.list("OIDC_ALLOWED_DOMAINS", default=[])]
OIDC_INVITED_ONLY = env.bool("OIDC_INVITED_ONLY", default=False)
# Groups from a claim, set on every sign-in ("" leaves groups to the admin panel); members of
# OIDC_ADMIN_GROUP become admins and others members ("" leaves roles to the admin panel).
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_ADMIN_GROUP = env.str("OIDC_ADMIN_GROUP", default="")
# PASSWORD_LOGIN=0: usernames and passwords sign nobody in; superusers get in by a one-time link
# from `manage.py users breakglass NAME`, valid for BREAKGLASS_SECONDS.
PASSWORD_LOGIN = env.bool("PASSWORD_LOGIN", default=True)
BREAKGLASS_SECONDS = env.int("BREAKGLASS_SECONDS", default=15 * 60)
# Backends set earlier in this file (say, a login throttle's) stay first.
AUTHENTICATION_BACKENDS = [
    *[b for b in globals().get("AUTHENTICATION_BACKENDS", []) if b != "django.contrib.auth.backends.ModelBackend"],
    "conversations.sso.backends.PasswordBackend",
    "conversations.sso.backends.SSOBackend",
    "django.contrib.auth.backends.ModelBackend",
]
TEMPLATES[0]["OPTIONS"]["context_processors"].append("conversations.sso.context.sign_in")

# Email for password reset and invitations, as a URL (django-environ): smtp+tls://user:password@
# host:587, smtps://...:465, smtp://host:25. Unset: mail is printed to the console, and invitation
# links are shown to the admin instead.
EMAIL_URL = env_or_file("EMAIL_URL") or ""  # it holds the SMTP password: EMAIL_URL_FILE works too
EMAIL_CONFIG = environ.Env.email_url_config(EMAIL_URL or "consolemail://")
EMAIL_DELIVERS = bool(EMAIL_URL) and EMAIL_CONFIG["EMAIL_BACKEND"].rsplit(".", 2)[-2] not in {"console", "dummy"}
MAILERS = {"default": {"BACKEND": EMAIL_CONFIG["EMAIL_BACKEND"], "OPTIONS": {}}}  # Django 6.1's form
if EMAIL_CONFIG["EMAIL_BACKEND"].endswith(".smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": EMAIL_CONFIG["EMAIL_HOST"], "port": EMAIL_CONFIG["EMAIL_PORT"],
        "username": EMAIL_CONFIG.get("EMAIL_HOST_USER") or None,
        "password": EMAIL_CONFIG.get("EMAIL_HOST_PASSWORD") or None,
        "use_tls": EMAIL_CONFIG.get("EMAIL_USE_TLS", False), "use_ssl": EMAIL_CONFIG.get("EMAIL_USE_SSL", False),
        "timeout": EMAIL_CONFIG.get("EMAIL_TIMEOUT", 10),  # seconds: a mail server that hangs fails instead
    }
elif EMAIL_CONFIG["EMAIL_BACKEND"].endswith(".filebased.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {"file_path": EMAIL_CONFIG["EMAIL_FILE_PATH"]}
if not EMAIL_URL:
    # Mail is optional here (invitation links are shown instead), so the deploy check's
    # "development-only email backend" error does not apply to the console default.
    SILENCED_SYSTEM_CHECKS = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "mail.E001"]
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Chatsite <chatsite@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
