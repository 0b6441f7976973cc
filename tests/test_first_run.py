"""The first run: the local model builds behind the site (conversations/local/build.py), and the
site says where it stands: not installed, being prepared, failed (and why), ready.

The builds here are real build processes under their real lock, with a stand-in command for the
install steps (`--command`), in a state folder of the test's own (LOCAL_MODEL_STATE_DIR). A
stand-in waits for a file the test creates, so the test decides when a build ends. The check
that follows a build ("done" only when llama.cpp loads) is the real one, against this virtual
environment: these tests need the local model installed, as tests/test_local_model.py does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from conversations import local
from conversations.local import build, state
from conversations.local.provision import create_local_provider
from conversations.local.supervisor import Supervisor
from conversations.models import ApiKey, Conversation, Message, Model, Provider
from tests.live import free_port
from tests.wsclient import Tab

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not local.available(), reason=f"the local model is not installed: {local.unavailable_reason()}")


class StandIn:
    """A stand-in for the install steps: notes its pid in `started`, then waits for `go` and
    exits with `code`."""

    def __init__(self, folder: Path):
        self.started, self.go = folder / "started", folder / "go"

    def command(self, code: int = 0, output: str = "") -> str:
        return (f"echo $$ >> {self.started}; {output}"
                f"while [ ! -e {self.go} ]; do sleep 0.05; done; exit {code}")

    def starts(self) -> list[int]:
        return [int(line) for line in self.started.read_text().split()] if self.started.exists() else []

    def finish(self) -> None:
        self.go.touch()


def run_build(*args: str, output: Path | None = None):
    """python -m conversations.local.build ARGS: to its end, or (with `output`) started."""
    command = [sys.executable, "-m", state.BUILD_MODULE, *args]
    if output is not None:
        with open(output, "w") as out:
            return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100)


def wait_for(predicate, timeout: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The state folder of this test's builds (the site reads it too)."""
    monkeypatch.setenv("LOCAL_MODEL_STATE_DIR", str(tmp_path / "venv"))
    return tmp_path / "venv"


@pytest.fixture
def stand_in(tmp_path, folder):
    stand_in = StandIn(tmp_path)
    yield stand_in
    stand_in.finish()  # no build outlives its test
    record = state.read()
    if state.builder_alive(record.get("pid")):
        wait_for(lambda: not state.builder_alive(record.get("pid")), what="the build to end")


@pytest.fixture
def on(settings):
    settings.LOCAL_MODEL, settings.LOCAL_MODEL_PORT = True, free_port()  # nothing answers there


def local_model() -> Model:
    create_local_provider()
    return Model.objects.select_related("provider").get(provider__name="local", upstream_id=local.MODEL_NAME)


def picker_label(client, conversation: Conversation) -> str:
    html = client.get(conversation.get_absolute_url()).content.decode()
    option = html.split(f'<option value="{local.MODEL_NAME}"', 1)[1]
    return option.split(">", 1)[1].split("</option>", 1)[0]


# -- not installed


def test_without_the_package_the_model_is_not_installed(folder):
    """An interpreter that cannot import llama_cpp (no site-packages) reads the state as missing."""
    code = ("from conversations.local import state; s = state.status(); "
            "print(s.state); print(s.reason); print(s.explanation)")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=30)
    assert result.returncode == 0, result.stderr
    status, reason, explanation = result.stdout.splitlines()
    assert (status, reason) == ("missing", "llama-cpp-python is not installed")
    assert "`make run` or `make local-model` installs it" in explanation


@pytest.mark.django_db(transaction=True)
def test_migrate_adds_no_local_model_when_it_is_not_installed_nor_being_built(folder, settings):
    """A killed build reads as not installed (interrupted): nothing is offered."""
    settings.LOCAL_MODEL = True
    state.write(state.BUILDING, pid=2**22 + 1, since=time.time())  # above pid_max: no such process
    assert (state.status().state, state.status().reason) == ("missing", "its build was interrupted")
    call_command("migrate", verbosity=0)
    assert not Provider.objects.filter(name="local").exists()


def test_a_half_installed_package_is_found(tmp_path):
    """What a pip killed mid-install leaves: a file shorter than its RECORD says."""
    site = tmp_path / "site-packages"
    info = site / "demo_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    (site / "demo_pkg").mkdir()
    (site / "demo_pkg" / "lib.so").write_bytes(b"x" * 100)
    (info / "RECORD").write_text("demo_pkg/lib.so,sha256=abc,100\ndemo_pkg-1.0.dist-info/METADATA,,\n"
                                 "demo_pkg-1.0.dist-info/RECORD,,\n")
    assert build.incomplete("demo-pkg", [str(site)]) == ""
    (site / "demo_pkg" / "lib.so").write_bytes(b"x" * 40)
    assert build.incomplete("demo-pkg", [str(site)]) == "demo-pkg is incompletely installed (demo_pkg/lib.so has 40 of 100 bytes)"
    (site / "demo_pkg" / "lib.so").unlink()
    assert "demo_pkg/lib.so is missing" in build.incomplete("demo-pkg", [str(site)])
    assert build.incomplete("no-such-pkg", [str(site)]) == "no-such-pkg is not installed"


# -- building, then ready


@pytest.mark.django_db(transaction=True)
def test_make_run_builds_in_the_background_and_the_site_offers_the_model_once_it_is_done(
        folder, stand_in, on, client, alice):
    launched = run_build("--background", "--command", stand_in.command())
    assert launched.returncode == 0 and "being installed in the background" in launched.stdout
    # make run went on to serve at once: the build runs detached, and the site already sees it.
    wait_for(stand_in.starts, what="the stand-in to start")
    assert state.status().state == "building"
    model = local_model()  # migrate offers it while it builds
    conversation = Conversation.objects.create(owner=alice, model=model)
    client.force_login(alice)
    assert picker_label(client, conversation) == "SmolLM2 135M (local) — preparing, under a minute"
    page = client.get(conversation.get_absolute_url()).content.decode()
    # The label refreshes itself while it is being prepared, and the notice is there already.
    assert f'hx-get="{reverse("local_model_label", args=[model.pk])}" hx-trigger="every 10s"' in page
    assert "is being prepared" in page.split('id="composer-notice"', 1)[1].split("</div>", 1)[0]

    # Picking it explains, in place.
    notice = client.get(reverse("local_model_notice"), {"model": model.name}).content.decode()
    assert 'id="composer-notice"' in notice and "SmolLM2 135M (local) is being prepared" in notice
    assert "without restarting the site" in notice
    assert client.get(reverse("local_model_notice"), {"model": "no-such"}).content.decode().endswith("></div>")

    # Elapsed time: a build that started 3 minutes ago says so.
    record = state.read()
    state.write(state.BUILDING, pid=record["pid"], since=record["since"] - 185)
    assert picker_label(client, conversation) == "SmolLM2 135M (local) — preparing, 3 min"
    label = client.get(reverse("local_model_label", args=[model.pk]))
    assert (label.status_code, label.content.decode()) == (200, "SmolLM2 135M (local) — preparing, 3 min")

    stand_in.finish()
    wait_for(lambda: state.status().ready, what="the build to be done")
    assert json.loads((folder / "local-model-state.json").read_text())["state"] == "done"
    assert (folder / ".local-model").exists()
    # The same site, not restarted: the plain label, and its poll told to stop (htmx's 286).
    assert picker_label(client, conversation) == "SmolLM2 135M (local)"
    label = client.get(reverse("local_model_label", args=[model.pk]))
    assert (label.status_code, label.content.decode()) == (286, "SmolLM2 135M (local)")
    assert client.get(reverse("local_model_notice"), {"model": model.name}).content.decode().endswith("></div>")
    assert stand_in.starts() and len(stand_in.starts()) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_member_who_sends_to_it_while_it_builds_gets_the_explanation_in_place(folder, stand_in, on, alice):
    run_build("--background", "--command", stand_in.command())
    await _async_wait(lambda: state.status().state == "building")
    from asgiref.sync import sync_to_async

    model = await sync_to_async(local_model)()
    conversation = await Conversation.objects.acreate(owner=alice, model=model)
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message="Hello?", model=model.name)
    frames = await tab.read_until(lambda f: 'id="composer-notice"' in f)
    assert "is being prepared" in frames[-1] and "pick another model meanwhile" in frames[-1]
    assert 'class="error"' not in "".join(frames)  # an explanation, not a failed reply
    assert not await Message.objects.filter(conversation=conversation).aexists()

    stand_in.finish()
    await _async_wait(lambda: state.status().ready)
    await tab.close()


async def _async_wait(predicate, timeout: float = 60) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_503_with_the_explanation_while_it_builds(folder, stand_in, on, alice, client, provider):
    run_build("--background", "--command", stand_in.command())
    wait_for(lambda: state.status().state == "building")
    model = local_model()
    secret = ApiKey.issue(alice, name="t")[1]
    body = {"model": model.name, "messages": [{"role": "user", "content": "Hi"}]}
    response = client.post("/v1/chat/completions", body, content_type="application/json",
                           headers={"authorization": f"Bearer {secret}"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    error = response.json()["error"]
    assert error["code"] == "model_not_ready" and error["type"] == "service_unavailable"
    assert error["message"].startswith("SmolLM2 135M (local) is being prepared")
    # With fallbacks (`models`), a model still being prepared is passed over, as one that is down.
    for names in ({"model": model.name, "models": ["echo"]}, {"model": "echo", "models": [model.name]}):
        response = client.post("/v1/chat/completions", body | names, content_type="application/json",
                               headers={"authorization": f"Bearer {secret}"})
        assert response.status_code == 200 and response.json()["model"] == "echo", response.content


# -- never twice at once, never half-installed


def test_builds_started_together_install_once_and_the_foreground_one_waits(folder, stand_in, tmp_path):
    first = run_build("--background", "--command", stand_in.command())
    assert "being installed in the background" in first.stdout
    wait_for(stand_in.starts, what="the stand-in to start")
    # A second `make run`: it leaves the build to the first.
    second = run_build("--background", "--command", stand_in.command())
    assert second.returncode == 0 and "being installed by another process" in second.stdout
    # `make test` meanwhile: it waits for that build rather than starting one.
    said = tmp_path / "waiting.out"
    waiting = run_build("--command", stand_in.command(), output=said)
    wait_for(lambda: "waiting for it" in said.read_text(), what="the second build to wait")
    assert waiting.poll() is None
    stand_in.finish()
    assert waiting.wait(100) == 0, said.read_text()
    assert "The local model is installed" in said.read_text()
    assert len(stand_in.starts()) == 1
    assert state.status().ready


def test_a_killed_build_is_found_and_redone(folder, stand_in):
    run_build("--background", "--command", stand_in.command())
    [step] = wait_for(stand_in.starts, what="the stand-in to start")
    builder = state.read()["pid"]
    assert state.status().state == "building"

    os.kill(builder, signal.SIGKILL)
    wait_for(lambda: gone(builder), what="the builder to die")
    wait_for(lambda: gone(step), what="its install step to die with it")  # no pip left writing
    status = state.status()
    assert (status.state, status.reason, status.short) == ("missing", "its build was interrupted", "not installed")

    # The next `make run` redoes it, and says why in the log.
    again = run_build("--background", "--command", "true")
    assert "being installed in the background" in again.stdout
    wait_for(lambda: state.status().ready, what="the build to be done")
    assert "again: the last build was interrupted" in (folder / "local-model.log").read_text()


# -- failed


@pytest.mark.django_db
def test_a_failed_build_says_why_in_the_picker_and_the_admin_and_make_local_model_retries(
        folder, stand_in, on, client, alice, charlie):
    failing = stand_in.command(1, output='echo "CMake Error at CMakeLists.txt:3 (project):"; '
                                          'echo "  No CMAKE_CXX_COMPILER could be found."; ')
    stand_in.finish()
    result = run_build("--command", failing)  # make setup
    assert result.returncode == 0  # the site and the suite go on without it
    reason = ("the stand-in build failed (exit code 1): CMake Error at CMakeLists.txt:3 (project): "
              "No CMAKE_CXX_COMPILER could be found.")
    assert reason in result.stdout and "make local-model" in result.stdout
    assert state.status().state == "failed" and state.status().reason == reason

    # make run does not try again by itself (minutes of CPU to fail the same way).
    skipped = run_build("--background", "--command", failing)
    assert "could not be installed" in skipped.stdout and len(stand_in.starts()) == 1

    model = local_model()
    conversation = Conversation.objects.create(owner=alice, model=model)
    client.force_login(alice)
    assert picker_label(client, conversation) == ("SmolLM2 135M (local) — could not be installed: "
                                                  "No CMAKE_CXX_COMPILER could be found.")
    notice = client.get(reverse("local_model_notice"), {"model": model.name}).content.decode()
    assert reason in notice and "Run `make local-model` to try again" in notice

    client.force_login(charlie)
    page = client.get(reverse("admin:conversations_provider_change", args=[model.provider.pk])).content.decode()
    assert "Local model" in page and "No CMAKE_CXX_COMPILER could be found" in page

    retried = run_build("--retry", "--command", "true")  # make local-model
    assert retried.returncode == 0 and "The local model is installed" in retried.stdout
    assert state.status().ready
    client.force_login(alice)
    assert picker_label(client, conversation) == "SmolLM2 135M (local)"


def test_make_local_model_fails_loudly_when_the_build_fails(folder):
    result = run_build("--retry", "--command", "echo 'ERROR: Could not find a version that satisfies the requirement'; exit 1")
    assert result.returncode == 1
    assert "ERROR: Could not find a version that satisfies the requirement" in state.status().reason


def test_the_reason_is_the_telling_line_of_a_pip_log():
    log = """Building wheels for collected packages: llama-cpp-python
  Building wheel for llama-cpp-python (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error
  In file included from vendor/llama.cpp/ggml/src/ggml.c:1:
  vendor/llama.cpp/ggml/src/ggml-impl.h:4:10: fatal error: stdlib.h: No such file or directory
ERROR: Failed building wheel for llama-cpp-python
ERROR: Failed to build installable wheels for some pyproject.toml based projects (llama-cpp-python)
"""
    assert build.failure_reason(log) == "vendor/llama.cpp/ggml/src/ggml-impl.h:4:10: fatal error: stdlib.h: No such file or directory"
    assert build.failure_reason("Collecting x\nERROR: No matching distribution found for llama-cpp-python<0.4\n") == (
        "ERROR: No matching distribution found for llama-cpp-python<0.4")


# -- in the browser, against a real server that was not restarted


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_picker_follows_the_build_and_the_model_answers_once_it_is_done(page, folder, stand_in, on, settings,
                                                                              alice, provider):
    from playwright.sync_api import expect

    from tests.conftest import log_in
    from tests.live import Server

    run_build("--background", "--command", stand_in.command())
    wait_for(lambda: state.status().state == "building")
    model = local_model()
    conversation = Conversation.objects.create(owner=alice, model=model)
    server = Server(env={"DJANGO_SETTINGS_MODULE": "tests.local_model_settings",
                         "LOCAL_MODEL_PORT": str(settings.LOCAL_MODEL_PORT), "LOCAL_MODEL_THREADS": "1"}).start()
    try:
        log_in(page, server.url, "alice", "alice-password")
        page.goto(server.url + conversation.get_absolute_url())
        option = page.locator(f'option[value="{model.name}"]')
        expect(option).to_have_text("SmolLM2 135M (local) — preparing, under a minute")
        notice = page.locator("#composer-notice")
        expect(notice).to_contain_text("SmolLM2 135M (local) is being prepared")
        page.get_by_label("Model").select_option("echo")
        expect(notice).to_have_text("")
        page.get_by_label("Model").select_option(model.name)  # picking it explains, in place
        expect(notice).to_contain_text("is being prepared")

        stand_in.finish()
        wait_for(lambda: state.status().ready, what="the build to be done")
        expect(option).to_have_text("SmolLM2 135M (local)", timeout=30_000)  # its label polls every 10 s
        # The site's supervisor starts the model's server within its check interval.
        wait_for(lambda: Supervisor(settings.LOCAL_MODEL_PORT).probe() == "ours", what="the model's server")
        page.wait_for_function("() => document.querySelector('#chat')['htmx-internal-data']?.webSocket?.socket?.readyState === 1")
        page.get_by_label("Message").fill("Say hello.")
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".message.assistant.complete .body")).not_to_be_empty(timeout=90_000)
        assert Message.objects.get(conversation=conversation, role="assistant").model == model.name
    finally:
        server.stop()
