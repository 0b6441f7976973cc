"""Browser-chat capacity: N websocket tabs streaming paced replies at once, and the site's CPU per reply.

    .venv/bin/python scripts/bench_capacity.py                          # embedded and bare, 100 and 300 tabs
    .venv/bin/python scripts/bench_capacity.py --configs production --tabs 100,300
    .venv/bin/python scripts/bench_capacity.py --configs embedded --tabs 400 --tokens 64 --ramp 2   # 200 messages/s
    .venv/bin/python scripts/bench_capacity.py --configs embedded --tabs 150 --py-spy PATH/TO/py-spy  # and a profile

It starts, each as its own process: a paced loopback upstream (scripts/bench_upstream.py: 200 ms to
the first token, then 20 ms a token on a fixed schedule; 400 tokens make a reply of 8.2 s) and the
site, in one of these configurations:

- `embedded`: `manage.py serve` (one Uvicorn process) on a throwaway SQLite database, the in-memory
  channel layer;
- `production`: `manage.py serve --workers 2` (as `make serve` runs it) on PostgreSQL and Redis
  (--database-url, a database it drops and creates; --redis-url, keys under a prefix of its own);
- `bare`: the bare stack (scripts/bench_bare_chat.py: a Channels consumer streaming from the
  same upstream with no database, authentication, templates or gateway), for the ratios.

For each number of tabs it creates that many members, each with a signed-in session and a
conversation of their own, opens a websocket tab for each (as a browser does: the session cookie,
the site's Origin), waits until every tab has joined, then has the tabs send one message each,
their starts spread evenly over --ramp seconds, and reads every frame. It prints a row per run:

- time to first token p50/p95 (from the message sent to the first fragment of text; the upstream
  alone takes 200 ms, and the chat batches fragments every 50 ms), and added p95 over 200 ms;
- the gap between a reply's fragments, p95 (the chat sends one every 50 ms);
- errors (a notice in place, a failed reply, a closed socket, a timeout), and the replies
  complete in the tabs and saved whole in the database;
- messages accepted per second (the user's message echoed back, from the first send to the last);
- the site's CPU (user + system, all its processes, read from /proc) from the first send until the
  replies (and the titles written after them) are done, divided by the replies: CPU ms per reply,
  and as a share of one core over that time; the largest resident memory of each process.

CPU per reply is the figure to compare between machines and runs: the load client and the upstream
share the machine with the site, so wall-clock latencies also measure how busy the machine is.
With --py-spy, each site process is sampled while the tabs stream, and the functions that take its
CPU are printed (self time, and inclusive time of the site's own code). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_gateway import free_port  # noqa: E402

PY = sys.executable
UPSTREAM_TTFT_MS = 200
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

FRAGMENT = re.compile(r'beforeend:#msg-\d+-text"')
FINAL = re.compile(r'class="message assistant (\w+)"')
NOTICE = re.compile(r'id="composer-notice"[^>]*>([^<]+)<')
ERROR = re.compile(r'<p class="error"[^>]*>([^<]*)<')


# -- processes, from /proc


def family(pid: int) -> list[int]:
    """The process and all its descendants (Uvicorn's supervisor and its workers)."""
    children = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


def rss_mib(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES / 2**20
    except OSError:
        return 0.0


# -- the site under test


class Site:
    def __init__(self, config: str, upstream_port: int, args):
        self.config, self.args, self.port = config, args, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.var = Path(tempfile.mkdtemp(prefix=f"bench-capacity-{config}-"))
        self.process: subprocess.Popen | None = None
        self.upstream_port = upstream_port
        from cryptography.fernet import Fernet

        self.env = {**os.environ, "CHATSITE_VAR_DIR": str(self.var), "DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50,
                    "CHATSITE_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "LOCAL_MODEL": "0",
                    "DJANGO_SETTINGS_MODULE": "chatsite.settings", "LOG_LEVEL": "WARNING",
                    "ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
        for name in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(name, None)
        if config == "production":
            self.env.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url,
                            CHATSITE_REDIS_PREFIX=f"bench-capacity-{os.getpid()}")
            _recreate_postgres(args.database_url)

    def manage(self, *command: str, script: str | None = None) -> str:
        argv = [PY, "manage.py", *command] + (["-c", script] if script else [])
        return subprocess.run(argv, cwd=ROOT, env=self.env, check=True, capture_output=True, text=True).stdout

    def start(self) -> Site:
        log = open(self.var / "server.log", "w")  # noqa: SIM115 - the process keeps it
        if self.config == "bare":
            command = [PY, str(ROOT / "scripts" / "bench_bare_chat.py"), str(self.port), str(self.upstream_port)]
        else:
            self.manage("migrate", "-v0")
            self.manage("shell", script=(
                "from conversations.models import Model, Provider\n"
                f"p = Provider.objects.create(name='bench', base_url='http://127.0.0.1:{self.upstream_port}/v1')\n"
                "for name in ('paced', 'paced-400', 'fast'):\n"
                "    Model.objects.create(provider=p, upstream_id=name, name=name)\n"))
            workers = self.args.workers if self.config == "production" else 1
            command = [PY, "manage.py", "serve", "--workers", str(workers), "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self._wait()
        return self

    def _wait(self) -> None:
        import httpx2 as httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the {self.config} site exited:\n{(self.var / 'server.log').read_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                if self.config != "production" or len(self.pids()) > self.args.workers:  # the workers too
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the {self.config} site did not start")

    def pids(self) -> list[int]:
        return family(self.process.pid)

    def prepare(self, tabs: int, tag: str) -> list[tuple[str, int]]:
        """`tabs` members, each signed in (a session) with a conversation of their own."""
        if self.config == "bare":
            return [("", i) for i in range(tabs)]
        out = self.manage("shell", script=f"""
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from conversations.models import Conversation, Model
User = get_user_model()
model = Model.objects.get(name={self.args.model!r})
users = User.objects.bulk_create([User(username=f"{tag}-{{i}}", password="!") for i in range({tabs})])
chats = Conversation.objects.bulk_create([Conversation(owner=u, model=model, title="Bench") for u in users])
out = []
for user, chat in zip(users, chats):
    session = SessionStore()
    session.update({{SESSION_KEY: str(user.pk), HASH_SESSION_KEY: user.get_session_auth_hash(),
                    BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend"}})
    session.create()
    out.append([session.session_key, chat.pk])
print("JSON " + json.dumps(out))
""")
        return [tuple(row) for row in json.loads(out.split("JSON ", 1)[1])]

    def saved(self, conversations: list[int], tokens: int) -> int:
        """How many of these conversations have their reply saved whole."""
        if self.config == "bare":
            return -1
        out = self.manage("shell", script=f"""
from conversations.models import Message
rows = Message.objects.filter(conversation_id__in={conversations!r}, role="assistant").values_list("status", "content")
print("SAVED", sum(1 for status, content in rows if status == "complete" and content.count(" tok") == {tokens}))
""")
        return int(out.split("SAVED", 1)[1].split()[0])

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.var, ignore_errors=True)


def _recreate_postgres(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.execute(f'CREATE DATABASE "{name}"')


# -- the tabs


@dataclass
class Tab:
    session: str
    conversation: int
    ws: object = None
    sent: float = 0.0
    accepted: float | None = None
    first_text: float | None = None
    fragments: list[float] = field(default_factory=list)
    ended: float | None = None
    error: str = ""


async def open_tab(site: Site, tab: Tab, handshakes: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect

    async with handshakes:
        tab.ws = await connect(f"ws://127.0.0.1:{site.port}/ws/conversations/{tab.conversation}/", origin=site.url,
                               additional_headers={"Cookie": f"sessionid={tab.session}"} if tab.session else {},
                               max_size=None, open_timeout=120, ping_interval=None, close_timeout=1)
        if site.config != "bare":  # joined: the consumer answers in order, so its answer ends the connect
            await tab.ws.send(json.dumps({"action": "ready?"}))
            while "unknown action" not in await tab.ws.recv():
                pass


async def chat(tab: Tab, start_at: float, model: str, seconds: float) -> None:
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    tab.sent = time.perf_counter()
    await tab.ws.send(json.dumps({"message": f"Hello from tab {tab.conversation}", "model": model}))
    try:
        async with asyncio.timeout(seconds):
            async for frame in tab.ws:
                now = time.perf_counter()
                if tab.accepted is None and 'class="message user' in frame:
                    tab.accepted = now
                if FRAGMENT.search(frame):
                    tab.fragments.append(now)
                    if tab.first_text is None:
                        tab.first_text = now
                if (notice := NOTICE.search(frame)) and notice.group(1).strip():
                    tab.error = f"notice: {notice.group(1).strip()[:80]}"
                    return
                for status in FINAL.findall(frame):
                    if status == "complete":
                        tab.ended = now
                        return
                    if status != "streaming":
                        said = ERROR.search(frame)
                        tab.error = f"reply {status}" + (f": {said.group(1)[:60]}" if said else "")
                        return
            tab.error = "socket closed"
    except TimeoutError:
        tab.error = "timeout"
    except Exception as exc:
        tab.error = f"{exc.__class__.__name__}: {exc}"[:80]


def pct(values: list[float], percent: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * percent / 100 + 0.5) - 1))]


async def run(site: Site, tabs_count: int, args, tag: str) -> dict:
    tabs = [Tab(session, conversation) for session, conversation in site.prepare(tabs_count, tag)]
    handshakes = asyncio.Semaphore(32)
    await asyncio.gather(*[open_tab(site, tab, handshakes) for tab in tabs])
    await asyncio.sleep(1.0)  # the connects' own work done
    pids = site.pids()
    rss = {pid: rss_mib(pid) for pid in pids}
    sampling = asyncio.Event()

    async def sample_memory():
        while not sampling.is_set():
            for pid in pids:
                rss[pid] = max(rss[pid], rss_mib(pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample_memory())
    spies = start_py_spy(args, pids, tabs_count)
    cpu_before, began = cpu_seconds(pids), time.perf_counter()
    step = args.ramp / max(1, len(tabs) - 1)
    await asyncio.gather(*[chat(tab, began + i * step, args.model, args.ramp + args.timeout) for i, tab in enumerate(tabs)])
    stop_py_spy(spies)
    await asyncio.sleep(args.settle)  # titles and usage rows written after the last reply
    cpu = cpu_seconds(pids) - cpu_before
    elapsed = time.perf_counter() - began
    sampling.set()
    await sampler
    for tab in tabs:
        await tab.ws.close()
    done = [t for t in tabs if t.ended is not None and not t.error]
    ttfts = [(t.first_text - t.sent) * 1000 for t in tabs if t.first_text]
    gaps = [(b - a) * 1000 for t in tabs for a, b in zip(t.fragments, t.fragments[1:], strict=False)]
    accepted = [t.accepted for t in tabs if t.accepted]
    errors = collections.Counter(t.error for t in tabs if t.error)
    return {
        "config": site.config, "tabs": tabs_count, "tokens": args.tokens,
        "ttft_p50": pct(ttfts, 50), "ttft_p95": pct(ttfts, 95), "gap_p95": pct(gaps, 95),
        "errors": sum(errors.values()), "error_kinds": dict(errors.most_common(3)), "complete": len(done),
        "saved": site.saved([t.conversation for t in tabs], args.tokens),
        "accept_p95": pct([(t.accepted - t.sent) * 1000 for t in tabs if t.accepted], 95),
        "accepted_per_s": len(accepted) / max(1e-9, max(accepted) - min(t.sent for t in tabs)) if accepted else 0.0,
        "cpu_ms_per_reply": cpu * 1000 / max(1, len(done)), "cpu_share": cpu / elapsed, "elapsed": elapsed,
        "rss_mib": sorted((round(v) for v in rss.values() if v > 0), reverse=True),
        "spies": spies,
    }


# -- profiling with py-spy (optional)


def start_py_spy(args, pids: list[int], tabs: int) -> list[tuple[subprocess.Popen, Path]]:
    if not args.py_spy:
        return []
    spies = []
    for pid in pids:
        out = Path(tempfile.gettempdir()) / f"bench-capacity-{pid}-{tabs}.txt"
        command = [args.py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking",
                   "--output", str(out)]
        spies.append((subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    return spies


def stop_py_spy(spies) -> None:
    import signal

    for process, _ in spies:
        process.send_signal(signal.SIGINT)
    for process, _ in spies:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def summarize_profile(path: Path, top: int = 25) -> str:
    """py-spy's raw (collapsed) stacks: the functions with the most samples, self and inclusive."""
    if not path.exists() or not path.stat().st_size:
        return f"  (no samples in {path.name}: an idle process)"
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"  {total} samples; self time:"]
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive time, the site's own code and Django/Channels:")
    mine = [(name, n) for name, n in inclusive.most_common() if any(k in name for k in (
        "conversations/", "chatsite/", "django/", "channels/", "channels_redis/"))]
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in mine[:top]]
    return "\n".join(lines)


def _frame(text: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file path from site-packages or the project)"
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


# -- the command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="bare,embedded", help="bare, embedded, production (comma-separated)")
    parser.add_argument("--tabs", default="100,300", help="tabs streaming at once, one run each (comma-separated)")
    parser.add_argument("--tokens", type=int, default=400, help="tokens a reply (400: 8.2 s)")
    parser.add_argument("--ramp", type=float, default=8.0, help="seconds over which the tabs send")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a reply may take beyond the ramp")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the last reply still counted")
    parser.add_argument("--workers", type=int, default=2, help="production: Uvicorn workers")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_capacity")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--py-spy", help="path to py-spy: profile the site's processes while the tabs stream")
    args = parser.parse_args()
    args.model = f"paced-{args.tokens}"

    upstream_port = free_port()
    upstream = subprocess.Popen([PY, str(ROOT / "scripts" / "bench_upstream.py"), str(upstream_port)])
    rows = []
    print(f"paced upstream: {UPSTREAM_TTFT_MS} ms to the first token, then 20 ms a token; {args.tokens}-token replies, "
          f"tabs sending over {args.ramp:g} s; load average {os.getloadavg()[0]:.1f}", flush=True)
    print(_header(), flush=True)
    try:
        for config in args.configs.split(","):
            site = Site(config, upstream_port, args).start()
            try:  # warm up: the first replies of a process load templates, modules and connections
                asyncio.run(run(site, 10, argparse.Namespace(**{**vars(args), "py_spy": None, "settle": 0.5,
                                                                 "ramp": 1.0}), tag=f"bench{os.getpid()}-warm"))
                for i, tabs in enumerate(int(n) for n in args.tabs.split(",")):
                    row = asyncio.run(run(site, tabs, args, tag=f"bench{os.getpid()}-{i}"))
                    rows.append(row)
                    print(_row(row), flush=True)
                    for process_spy in row["spies"]:
                        print(f"profile of {process_spy[1].name}:\n{summarize_profile(process_spy[1])}", flush=True)
            finally:
                site.stop()
    finally:
        upstream.terminate()
        upstream.wait(10)


def _header() -> str:
    return (f"{'configuration':<11} {'tabs':>5} | {'TTFT p50':>8} {'p95':>6} {'added':>6} | {'gap p95':>7} | "
            f"{'errors':>6} {'complete':>8} {'saved':>5} | {'msg/s':>5} {'accept p95':>10} | {'CPU ms/reply':>12} {'CPU':>5} {'wall s':>6} | RSS MiB")


def _row(r: dict) -> str:
    saved = "-" if r["saved"] < 0 else str(r["saved"])
    errors = f"{r['errors']}" + (f" {r['error_kinds']}" if r["errors"] else "")
    return (f"{r['config']:<11} {r['tabs']:>5} | {r['ttft_p50']:>8.0f} {r['ttft_p95']:>6.0f} "
            f"{r['ttft_p95'] - UPSTREAM_TTFT_MS:>+6.0f} | {r['gap_p95']:>7.0f} | {r['errors']:>6} {r['complete']:>8} "
            f"{saved:>5} | {r['accepted_per_s']:>5.0f} {r['accept_p95']:>10.0f} | {r['cpu_ms_per_reply']:>12.1f} {100 * r['cpu_share']:>4.0f}% {r['elapsed']:>6.1f} | "
            f"{', '.join(map(str, r['rss_mib']))}" + ("" if not r["errors"] else f"\n    errors: {errors}"))


if __name__ == "__main__":
    main()
