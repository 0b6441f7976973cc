"""CI fails when a whole part of the suite went untested (see .ci/run)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.live import ROOT


def test_a_skipped_browser_test_fails_the_run_when_every_part_is_required():
    # No chromium on PATH: the browser tests skip; with CHATSITE_REQUIRE_ALL_PARTS that is a failure.
    env = {**os.environ, "PATH": os.path.dirname(sys.executable), "CHATSITE_REQUIRE_ALL_PARTS": "1",
           "CHATSITE_TEST_RUN": "ci" + secrets.token_hex(4)}  # a test database of its own
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "-rs", "--no-migrations", "tests/test_browser.py::test_first_visit_creates_the_admin_then_chats"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "parts of the suite that did not run" in result.stdout
    assert "browser: tests/test_browser.py::test_first_visit_creates_the_admin_then_chats" in result.stdout
    assert "chromium is not installed" in result.stdout
