"""The test settings with the embedded local model on, for a server under test that offers it
(tests/test_first_run.py); the suite's other servers keep it off (tests/settings.py)."""

from tests.settings import *  # noqa: F403

LOCAL_MODEL = True
