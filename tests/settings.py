"""Settings for the test suite: the site's own, made fast and kept apart per xdist worker."""

import os

from chatsite.settings import *  # noqa: F403
from chatsite.settings import CACHES, CHANNEL_LAYERS, DATABASES, REDIS_PREFIX, REDIS_URL, VAR_DIR

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# One id per test run (shared by its xdist workers), so that runs side by side never share a
# test database or Redis keys; servers started by a test inherit it through the environment.
RUN = os.environ.setdefault("CHATSITE_TEST_RUN", os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8] or str(os.getpid()))

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The browser and multi-process tests start servers that must open the test database: a file.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{RUN}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_chatsite_{RUN}"}

# Each worker (and the servers it starts) on Redis keys of its own.
if REDIS_URL:
    REDIS_PREFIX = f"{REDIS_PREFIX}-test-{RUN}-{WORKER}"  # rate-limit counters too
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{REDIS_PREFIX}:"
    CACHES["default"]["KEY_PREFIX"] = REDIS_PREFIX

# A test's servers may need longer (Stop on a dead reply, before any sweep could mark it).
CHAT_STALE_SECONDS = float(os.environ.get("CHAT_STALE_SECONDS") or 5.0)
USAGE_FLUSH_SECONDS = 0.2
# Servers under test must see each test's fresh rows (tests/test_gateway_cache.py covers caching); a test of the
# bound across processes gives its servers a non-zero value through the environment.
GATEWAY_CACHE_SECONDS = float(os.environ.get("GATEWAY_CACHE_SECONDS") or 0.0)
# The embedded local model stays out of the suite's databases and servers (so that tests see the
# same rows on every machine); tests/test_local_model.py turns it on where it tests it.
LOCAL_MODEL = False
# The automatic title is one more upstream request and usage row after each first reply, which the
# suite's counts of those do not expect; tests/test_organise.py turns it on where it tests it.
CHAT_AUTO_TITLE = False

# Servers started by the tests outlive each test's database flush (see tests/middleware.py).
MIDDLEWARE = ["tests.middleware.fresh_content_types", *MIDDLEWARE]  # noqa: F405

# Attachments of each worker (and of the servers it starts) in a folder of their own, removed at
# the end of the run (tests/conftest.py).
ATTACHMENTS_DIR = VAR_DIR / f"test-attachments-{RUN}-{WORKER}"
STORAGES = {**STORAGES, "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage",  # noqa: F405
                                        "OPTIONS": {"location": str(ATTACHMENTS_DIR)}}}
