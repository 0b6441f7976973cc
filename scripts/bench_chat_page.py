"""Benchmark one conversation's page at 1,000 messages over 10 branches, through the real view.

    .venv/bin/python scripts/bench_chat_page.py                 # SQLite, in a temporary file
    .venv/bin/python scripts/bench_chat_page.py --database-url postgres://postgres@127.0.0.1:5432/bench_chat

Builds a fresh database (migrated), one member and one conversation: 10 versions of its first
question, each the start of a branch of 100 messages (replies with Markdown, code and math, and
their usage records), the last branch shown. Then it renders /c/<id>/ through the Django test
client, as a browser asks for it, and prints the queries one render takes and the render time
(the first, with nothing cached but compiled templates, then p50, p95, max of the next
renders, whose replies' HTML is cached: conversations/markdown.py), and the same for "earlier messages" (?before=, scrolling up along the branch).
The target: constant queries, p50 <= 100 ms. The CPU time of the process per render is printed
too: on a machine busy with other work, the wall-clock figures include waiting for a core (the
database server's own time is not in it, so it is a lower bound).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPLY = ("Here is how:\n\n| step | what |\n|---|---|\n| 1 | measure |\n| 2 | fix |\n\n"
         "```python\nfor i in range(3):\n    print(i)\n```\n\nand the area is $\\pi r^2$, so $$E = mc^2$$")


def build(branches: int, per_branch: int):
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation, Message, UsageRecord

    user = get_user_model().objects.create_user("bench", password="bench-password")
    conversation = Conversation.objects.create(owner=user, title="Bench")
    for b in range(branches):
        rows = Message.objects.bulk_create([
            Message(conversation=conversation, role="assistant" if i % 2 else "user",
                    content=f"{REPLY} (reply {i} of branch {b})" if i % 2 else f"Question {i} of branch {b}: how do I do this?",
                    request_id=f"req-{b}-{i}" if i % 2 else "", model="bench-model")
            for i in range(per_branch)])
        parent = None
        for row in rows:
            row.parent_id, parent = parent, row.pk
        Message.objects.bulk_update(rows, ["parent"], batch_size=500)
        UsageRecord.objects.bulk_create([
            UsageRecord(request_id=row.request_id, source="chat", user=user, model_name="bench-model",
                        prompt_tokens=900, completion_tokens=120, ttft_ms=180, duration_ms=2400)
            for row in rows if row.request_id])
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    return user, conversation


def measure(client, url: str, runs: int, headers: dict) -> tuple[int, list[float]]:
    from django.db import connection

    queries = []  # counted as executed (the connection is closed after each request, and its log with it)
    start = time.perf_counter()
    with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
        response = client.get(url, **headers)
    cold = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, response.status_code
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        client.get(url, **headers)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return len(queries), cold, times, cpu


def report(name: str, queries: int, cold: float, times: list[float], cpu: list[float]) -> None:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"{name:<26} {queries:>3} queries   first {cold:6.1f} ms   then p50 {statistics.median(times):6.1f} ms"
          f"   p95 {p95:6.1f} ms   max {times[-1]:6.1f} ms   (CPU p50 {statistics.median(cpu):5.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--branches", type=int, default=10)
    parser.add_argument("--per-branch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    from cryptography.fernet import Fernet

    folder = tempfile.mkdtemp(prefix="bench-chat-")
    os.environ.update(DATABASE_URL=args.database_url or f"sqlite:///{folder}/bench.sqlite3", DEBUG="0",
                      SECRET_KEY="bench", LOCAL_MODEL="0", ALLOWED_HOSTS="testserver",
                      CHATSITE_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("flush", interactive=False, verbosity=0) if args.database_url else None
    call_command("migrate", verbosity=0)
    user, conversation = build(args.branches, args.per_branch)
    total = conversation.messages.count()
    print(f"{connection.vendor}: one conversation of {total} messages over {args.branches} branches")
    client = Client()
    client.force_login(user)
    url = f"/c/{conversation.id}/"
    report("page (latest 50)", *measure(client, url, args.runs, {}))
    from conversations.chat.tree import Tree

    path = Tree.of(conversation.id).path(conversation.current_leaf_id)
    report("earlier (?before=, htmx)", *measure(client, f"{url}?before={path[-50]}", args.runs, {"HTTP_HX_REQUEST": "true"}))
    report("search result (?around=)", *measure(client, f"{url}?around={path[10]}", args.runs, {}))


if __name__ == "__main__":
    main()
