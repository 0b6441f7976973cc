from __future__ import annotations

import asyncio
import os
import shutil

import pytest
from django.contrib.auth import get_user_model

from conversations import middleware, throttle
from conversations.gateway import usage
from conversations.models import ApiKey, Conversation, Model, Provider
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, log_in  # noqa: F401 - log_in: the browser tests take it from here
from tests.live import Server
from tests.upstream import MODELS, Upstream

REDIS = bool(os.environ.get("REDIS_URL"))
BROWSER_TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def upstream():
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _close_async_connections(django_db_setup, django_db_blocker):
    """The async tests' queries run on asgiref's worker thread, with a connection of its own;
    it is closed before the test database is dropped (PostgreSQL refuses while it is open), and so
    is PostgreSQL's pool (chatsite/settings.py), which keeps the connections given back to it."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all)())
        for connection in connections.all():
            if getattr(connection, "pool", None):
                connection.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _attachments_removed_at_the_end():
    """The attachments a worker's tests stored (tests/settings.py gives each worker its folder)."""
    yield
    from django.conf import settings

    shutil.rmtree(settings.ATTACHMENTS_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_process_state(upstream):
    """What a process remembers between requests starts empty in each test."""
    middleware.reset()
    throttle.reset()
    usage.discard_pending()
    upstream.requests.clear()
    yield
    usage.discard_pending()


# -- the cast: alice and bob are members, charlie is the admin


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", "alice@example.com", "alice-password")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture
def charlie(db):
    return get_user_model().objects.create_superuser("charlie", "charlie@example.com", "charlie-password")


@pytest.fixture
def provider(db, upstream):
    """The loopback upstream as a provider, with each of its scripted models."""
    loop = Provider(name="loop", base_url=upstream.base_url)
    loop.api_key = "sk-upstream-secret-1234"
    loop.save()
    for name in MODELS:
        Model.objects.create(provider=loop, upstream_id=name, name=name)
    return loop


@pytest.fixture
def conversation(alice, provider):
    return Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))


@pytest.fixture(autouse=True)
def _servers_quiet_before_flush(request):
    """A test's live servers may still be writing (a reply, a usage batch) when it ends; the
    database flush that follows must not race them (PostgreSQL: a TRUNCATE deadlock)."""
    servers = {"site_server", "api_server", "two_servers", "fault_site", "redis_site", "production_site", "production_pair"} & set(request.fixturenames)
    if servers:
        request.getfixturevalue("transactional_db")  # set up first, so flushed after this waits
    yield
    if not servers:
        return
    import time

    from conversations.models import Message

    deadline = time.monotonic() + 15
    while Message.objects.filter(status="streaming").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # the servers' usage batches (USAGE_FLUSH_SECONDS = 0.2)


# -- API keys


@pytest.fixture
def alice_key(alice, provider) -> str:
    """A gateway key of alice's, with no limits; the secret."""
    return ApiKey.issue(alice, name="test")[1]


# -- live servers and the browser


@pytest.fixture(scope="session")
def site_server(django_db_setup, django_db_blocker):
    """A Daphne process serving this run's test database (use with django_db(transaction=True))."""
    with django_db_blocker.unblock():
        server = Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api_server(django_db_setup, django_db_blocker):
    """A Uvicorn process (the production server) serving this run's test database."""
    with django_db_blocker.unblock():
        server = Server(server="uvicorn").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is
    open, and the async tests that a worker runs after the browser's module need the thread's."""
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import expect, sync_playwright

    # expect() waits 5 s by default, apart from the context's timeouts: on a loaded machine a
    # reply can take longer to show. A deadline for a stuck test, not a speed expectation.
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code; the tests' own ORM calls are plain sync code, so the check is lifted here
    # (not in the servers under test: tests/live.py starts them without this variable).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


# -- CI: a whole part of the suite skipped is a failure, not a pass

REQUIRE_ALL_PARTS = os.environ.get("CHATSITE_REQUIRE_ALL_PARTS", "") not in ("", "0")
_untested: list = []


def _part_of(report) -> str | None:
    """The part a test belongs to, if CI must not let it go untested."""
    if report.nodeid.startswith(("tests/test_local_model.py", "tests/test_first_run.py")):
        return "local model"
    if "browser" in report.keywords and not ("redis" in report.keywords and not REDIS):
        return "browser"  # (the Redis-only browser tests skip in the embedded pass, on purpose)
    return None


def pytest_runtest_logreport(report):
    if REQUIRE_ALL_PARTS and report.skipped and (part := _part_of(report)):
        _untested.append((part, report))


def pytest_terminal_summary(terminalreporter):
    if _untested:
        terminalreporter.section("parts of the suite that did not run", red=True)
        for part, report in _untested:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.line(f"{part}: {report.nodeid}: {reason}")
        terminalreporter.line("CHATSITE_REQUIRE_ALL_PARTS is set (CI): these must run, so the run fails.")


def pytest_sessionfinish(session, exitstatus):
    if _untested and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- message trees in bulk


def chain(conversation, messages: list, parent_id: int | None = None) -> list:
    """Insert `messages` (unsaved Message objects) as a chain under `parent_id`, in bulk."""
    from conversations.chat import tree

    return tree.chain(conversation, messages, parent_id)
