"""Chatsite settings, read from the environment.

Every setting has a safe embedded default (SQLite under var/, the in-memory channel layer, local
memory cache) so that `make run` works on a fresh machine; production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS and DEBUG=0 (see README, "Settings").
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

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
    "conversations.middleware.FirstRunMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
            ],
        },
    },
]

# -- Database: SQLite (WAL) under var/ by default, PostgreSQL via DATABASE_URL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE: writers queue on the lock instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# A connection kept between requests (`?conn_max_age=600` in DATABASE_URL) is checked before its
# first use in each request or websocket event: one the database dropped (a restart) is replaced.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
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

# -- Chat behaviour
CHAT_BATCH_SECONDS = env.float("CHAT_BATCH_SECONDS", default=0.05)  # one websocket frame per 50 ms
CHAT_SAVE_SECONDS = env.float("CHAT_SAVE_SECONDS", default=1.0)  # progress saved at least this often
# A "streaming" message not saved for this long belongs to a process that died: interrupted.
CHAT_STALE_SECONDS = env.float("CHAT_STALE_SECONDS", default=15.0)
USAGE_FLUSH_SECONDS = env.float("USAGE_FLUSH_SECONDS", default=1.0)
CURRENCY = env.str("CHATSITE_CURRENCY", default="USD")  # of model prices and budgets
GATEWAY_CACHE_SECONDS = env.float("GATEWAY_CACHE_SECONDS", default=2.0)
# The /v1 API's largest request body (images as data URLs make bodies big).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=20 * 1024 * 1024)
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=10.0)
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=300.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
    "loggers": {"chatsite": {"level": env.str("LOG_LEVEL", default="INFO")}},
}

# -- The embedded local model (conversations/local): a child process serves it on loopback.
LOCAL_MODEL = env.bool("LOCAL_MODEL", default=True)
LOCAL_MODEL_PORT = env.int("LOCAL_MODEL_PORT", default=8011)
# Generation threads: a few are enough for a 135M model, and leave the cores to the web processes.
LOCAL_MODEL_THREADS = env.int("LOCAL_MODEL_THREADS", default=max(1, min(4, (os.cpu_count() or 2) // 2)))
