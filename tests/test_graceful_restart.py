"""A rolling restart while replies stream loses nothing (PostgreSQL + Redis, the production
command's processes).

Two site processes (`manage.py serve`, as `make serve` runs them) with a short grace period. On
each in turn, a short chat reply, a long one (longer than the grace), a short /v1 stream and a
long one are running when the process gets SIGTERM; then it is started again and the other one
gets its SIGTERM. Each time: the short ones finish, the long ones are saved with their text
(the chat reply "interrupted", the /v1 request "cancelled"), every usage row is settled by the
stopping process itself before it exits (not left for the sweep), and a tab on the other process
sees the long reply's final state through Redis.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from conversations.models import ApiKey, Conversation, Message, Model, UsageRecord
from conversations.models.chat import INTERRUPTED_ERROR
from tests.conftest import REDIS
from tests.live import LiveTab, Server
from tests.test_reply_kill import wait_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS, reason="needs REDIS_URL: the PostgreSQL+Redis pass runs it"),
]

GRACE = 6  # seconds; the long replies take 8 s (400 words, 20 ms apart), the short ones about 1
SHORT = " ".join(f"w{i}" for i in range(30))


def v1_stream(server: Server, secret: str, model: str) -> tuple[str, list[str]]:
    """A /v1 stream read to its end: the request id and the data lines."""
    events = []
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": SHORT}]},
                      timeout=60) as response:
        assert response.status_code == 200
        try:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: "):])
        except httpx.HTTPError:  # the server cut a stream it could not finish in the grace period
            pass
        return response.headers["X-Request-Id"], events


def stop_while_streaming(stopping: Server, watching: Server, alice, secret: str, pool: ThreadPoolExecutor):
    rows_before = UsageRecord.objects.count()
    short = Conversation.objects.create(owner=alice, model=Model.objects.get(name="slow"))
    long = Conversation.objects.create(owner=alice, model=Model.objects.get(name="long"))
    writers = [LiveTab(stopping, alice, short.id).joined(), LiveTab(stopping, alice, long.id).joined()]
    watcher = LiveTab(watching, alice, long.id).joined()
    writers[0].send(message=SHORT, model="slow")
    writers[1].send(message="a long one", model="long")
    streams = [pool.submit(v1_stream, stopping, secret, "slow"), pool.submit(v1_stream, stopping, secret, "long")]
    watcher.read_until(lambda frame: "word5" in frame)  # everything is under way
    # All four under way (a row each; the short ones may be done already).
    wait_for(lambda: UsageRecord.objects.count() >= rows_before + 4,
             f"the four requests' rows ({[f.exception() for f in streams if f.done()]})", timeout=60)

    stopping.process.terminate()  # SIGTERM
    stopping.process.wait(GRACE + 20)

    # What the process saved before it exited, with nothing left for another process's sweep.
    short_reply = Message.objects.get(conversation=short, role="assistant")
    long_reply = Message.objects.get(conversation=long, role="assistant")
    assert short_reply.status == "complete" and short_reply.content == f"Echo: {SHORT}"
    assert long_reply.status == "interrupted" and long_reply.error == INTERRUPTED_ERROR
    assert long_reply.content.startswith("word0 word1 word2 word3 word4 word5") and "word399" not in long_reply.content
    (short_id, short_events), (long_id, long_events) = (stream.result(timeout=30) for stream in streams)
    assert short_events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in short_events[:-1]
                   if json.loads(e).get("choices")) == f"Echo: {SHORT}"
    assert long_events and "[DONE]" not in long_events  # cut once the grace period was over
    rows = {row.request_id: row for row in UsageRecord.objects.filter(
        request_id__in=[short_reply.request_id, long_reply.request_id, short_id, long_id])}
    assert {request_id: row.status for request_id, row in rows.items()} == {
        short_reply.request_id: "ok", long_reply.request_id: "cancelled", short_id: "ok", long_id: "cancelled"}
    assert rows[long_reply.request_id].completion_tokens > 0 and rows[long_id].completion_tokens > 0
    assert not Message.objects.filter(status="streaming").exists()
    assert not UsageRecord.objects.filter(status="pending").exists()

    # The tab on the other process saw the long reply end, with its text.
    final = watcher.read_reply("interrupted")[-1]
    assert "word5" in final
    for tab in (*writers, watcher):
        tab.close()


@pytest.mark.timeout(300)  # four production processes started and two stopped, each grace period waited out
def test_a_rolling_restart_while_replies_stream_loses_nothing(django_db_blocker, tmp_path, alice, provider):
    _, secret = ApiKey.issue(alice, name="restart")

    started: list[Server] = []

    def start(name: str) -> Server:
        with django_db_blocker.unblock():
            started.append(Server(server="serve", env={"CHAT_SHUTDOWN_GRACE_SECONDS": str(GRACE),
                                                       "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / name)}))
            return started[-1].start()

    try:
        one, two = start("a"), start("b")
        with ThreadPoolExecutor(4) as pool:
            stop_while_streaming(one, two, alice, secret, pool)
            one = start("a2")  # restarted; then the other one
            stop_while_streaming(two, one, alice, secret, pool)
            two = start("b2")

        # Service goes on: a message sent now is answered.
        conversation = Conversation.objects.create(owner=alice, model=Model.objects.get(name="echo"))
        tab = LiveTab(two, alice, conversation.id)
        tab.send(message="still there?")
        assert "Echo: still there?" in tab.read_reply()[-1]
        tab.close()
    finally:
        for server in started:
            server.stop()  # those stopped by the test have exited: this closes their logs
