"""Gateway overhead: direct-to-upstream against through-Chatsite, interleaved, in one run.

Measures, for 64-token streamed replies from a fast loopback upstream, the added time to first
token (p50, p95) and requests per second at concurrency 1, 10 and 50; then 100 paced streams
(200 ms to first token, 20 ms a token) and their added p95 time to first token: kept up at a
steady rate, and all started in one burst (which measures how fast a burst is absorbed: about a
millisecond of set-up per request, one core, in any Python server). Beside Chatsite,
the same load goes to a bare Django async view relaying with the same client
(scripts/bench_bare_relay.py): what the stack itself costs, in the same run, on the same machine.

Run by hand:  .venv/bin/python scripts/bench_gateway.py [--seconds 5] [--rounds 3] [--server uvicorn|daphne] [--budget]
It starts the upstream and one Chatsite server on a throwaway SQLite database under var/bench/.
The load generator is a minimal HTTP/1.1 client on raw sockets, so it costs little CPU itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, path: str = "/v1/models", headers: dict | None = None) -> None:
    import httpx2 as httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers or {}, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port}")


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs a streamed completion and times it."""

    def __init__(self, port: int, path: str, key: str | None):
        self.port, self.path, self.key = port, path, key
        self.reader = self.writer = None

    async def request(self, body: bytes) -> tuple[float, float]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        auth = f"Authorization: Bearer {self.key}\r\n" if self.key else ""
        head = (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        start = time.perf_counter()
        self.writer.write(head + body)
        first = None
        buffer = b""
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            buffer += data
            if first is None and b'"content":"' in buffer:
                first = time.perf_counter()
            if b"data: [DONE]" in buffer and buffer.endswith(b"\r\n0\r\n\r\n") or buffer.endswith(b"[DONE]\n\n"):
                break
        return first - start, time.perf_counter() - start


async def run_load(port: int, path: str, key: str | None, model: str, concurrency: int, seconds: float,
                   requests_each: int | None = None, stagger: float = 0.0) -> dict:
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    ttfts: list[float] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int):
        nonlocal done
        await asyncio.sleep(i * stagger)  # spread the starts: a steady arrival rate, not one burst
        conn = Connection(port, path, key)
        count = 0
        while (requests_each is None and time.perf_counter() < stop_at) or (requests_each is not None and count < requests_each):
            ttft, _ = await conn.request(body)
            ttfts.append(ttft)
            done += 1
            count += 1
        conn.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*[worker(i) for i in range(concurrency)])
    elapsed = time.perf_counter() - started
    ttfts.sort()
    return {"rps": done / elapsed, "p50": ttfts[len(ttfts) // 2] * 1000, "p95": ttfts[int(len(ttfts) * 0.95) - 1] * 1000,
            "n": done}


def setup_site(var: Path, upstream_port: int, budget: bool = False) -> tuple[dict, str]:
    if var.exists():
        shutil.rmtree(var)
    var.mkdir(parents=True)
    env = {**os.environ, "CHATSITE_VAR_DIR": str(var), "DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50,
           "CHATSITE_ENCRYPTION_KEYS": "", "LOCAL_MODEL": "0", "DJANGO_SETTINGS_MODULE": "chatsite.settings",
           "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    from cryptography.fernet import Fernet

    env["CHATSITE_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    script = f"""
from django.contrib.auth import get_user_model
from conversations.models import ApiKey, Model, Provider
user = get_user_model().objects.create_user("bench", password="x")
p = Provider.objects.create(name="bench", base_url="http://127.0.0.1:{upstream_port}/v1")
for name in ("fast", "paced"):
    Model.objects.create(provider=p, upstream_id=name, name=name)
key, secret = ApiKey.issue(user)
if {budget!r}:  # --budget: spend counters checked and settled on every request, never reached
    key.budget_total = key.budget_monthly = 10**7
    key.save()
print(secret)
"""
    out = subprocess.run([PY, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return env, out.stdout.strip().splitlines()[-1]


def start_site(env: dict, port: int, server: str) -> subprocess.Popen:
    if server == "daphne":
        cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"]
    else:
        cmd = [PY, "-m", "uvicorn", "chatsite.asgi:application", "--host", "127.0.0.1", "--port", str(port),
               "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "daphne"])
    parser.add_argument("--budget", action="store_true", help="the key has a total and a monthly budget")
    args = parser.parse_args()

    up_port, site_port, bare_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen([PY, str(ROOT / "scripts" / "bench_upstream.py"), str(up_port)])
    bare = subprocess.Popen([PY, str(ROOT / "scripts" / "bench_bare_relay.py"), str(bare_port), str(up_port)])
    env, key = setup_site(ROOT / "var" / "bench", up_port, args.budget)
    site = start_site(env, site_port, args.server)
    try:
        wait_for(up_port)
        wait_for(site_port, "/v1/models", {"Authorization": f"Bearer {key}"})
        wait_for(bare_port, "/")
        sides = {"direct": (up_port, "/v1/chat/completions", None),
                 "bare": (bare_port, "/v1/chat/completions", None),
                 "chatsite": (site_port, "/v1/chat/completions", key)}
        for side in sides.values():
            asyncio.run(run_load(*side, "fast", 10, 1.0))  # warm up
        print(f"server: {args.server}; {args.rounds} interleaved rounds of {args.seconds:.0f} s per point; medians;"
              f" 'added' is over direct; load average {os.getloadavg()[0]:.1f}")
        print(f"{'concurrency':>11} | {'direct rps':>10} | {'bare rps':>8} {'added p50':>9} | "
              f"{'chatsite rps':>12} {'added p50':>9} {'added p95':>9} | {'chatsite/bare rps':>17}")
        for concurrency in (1, 10, 50):
            rows = {name: [] for name in sides}
            for _ in range(args.rounds):
                for name, side in sides.items():
                    rows[name].append(asyncio.run(run_load(*side, "fast", concurrency, args.seconds)))
            med = {name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p95")} for name, rs in rows.items()}
            d, b, c = med["direct"], med["bare"], med["chatsite"]
            print(f"{concurrency:>11} | {d['rps']:>10.0f} | {b['rps']:>8.0f} {b['p50'] - d['p50']:>9.2f} | "
                  f"{c['rps']:>12.0f} {c['p50'] - d['p50']:>9.2f} {c['p95'] - d['p95']:>9.2f} | {c['rps'] / b['rps']:>17.2f}")
        # 100 paced streams at once, kept up: each worker starts its next stream as one ends; the
        # starts are spread over one stream's length (1.5 s), so requests arrive at a steady rate.
        steady = {name: [] for name in sides}
        burst = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, side in sides.items():
                steady[name].append(asyncio.run(run_load(*side, "paced", 100, max(args.seconds, 6), stagger=0.015)))
                burst[name].append(asyncio.run(run_load(*side, "paced", 100, 0, requests_each=1)))
        for title, runs in (("100 concurrent paced streams, steady", steady), ("100 paced streams in one burst", burst)):
            p95 = {name: statistics.median(r["p95"] for r in rs) for name, rs in runs.items()}
            print(f"{title}: p95 time to first token: direct {p95['direct']:.1f} ms, bare {p95['bare']:.1f} ms "
                  f"(+{p95['bare'] - p95['direct']:.1f}), chatsite {p95['chatsite']:.1f} ms (+{p95['chatsite'] - p95['direct']:.1f})")
    finally:
        for process in (site, bare, upstream):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
