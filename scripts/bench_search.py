"""Benchmark conversation search on a generated corpus, through the real /search/ view.

    .venv/bin/python scripts/bench_search.py sqlite --messages 200000
    .venv/bin/python scripts/bench_search.py postgres --messages 1000000
    .venv/bin/python scripts/bench_search.py sqlite --messages 200000 --heavy-user   # one member, common words

Builds the corpus once (in var/bench.sqlite3, or a `bench_search` PostgreSQL database on
127.0.0.1; --database-url to choose another) and reuses it while the size matches; --fresh
rebuilds it. The corpus: many users with a long-tailed amount of history, conversations of varied
length, messages from a sentence to several pages, Zipf-distributed English words with some
Chinese. Rows are written with bulk inserts (COPY on PostgreSQL) into the migrated schema, so
the search triggers and the generated column do the indexing, as in production.

Then it signs in as users drawn by their amount of history (people with more history search
more) and times typical searches through the Django test client, as the search box asks for
them (htmx), and prints p50/p95 per kind of search, overall, and the index sizes.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# -- the corpus's words

FUNCTION_WORDS = (
    "the of and to a in is that it for you with on as this be are can we was if or by not your "
    "at from have an but will so what all do use there would which when how they more one about "
    "should then also like just need here into some my could than out its them these our may"
).split()
TOPIC_WORDS = (
    "python database migration deploy kubernetes error server query index performance cache "
    "function class test request response user api token model training data pipeline docker "
    "container cluster network latency memory thread process file config setting version bug "
    "recipe dinner travel budget flight hotel garden music book movie weather meeting email "
    "schedule project design review customer invoice contract report chart table column row "
    "javascript typescript react component state event stream socket websocket queue worker "
    "postgres sqlite redis nginx linux kernel compile build release branch commit merge rebase"
).split()
PHRASES = ["connection pool", "machine learning", "unit test", "pull request", "error message",
           "time zone", "foreign key", "load balancer", "rate limit", "blue green deployment"]
SYLLABLES = "ka lo mi ren sto vel dra qui nor pan te sul bri gon fa xe lum tor wen zi hap cro".split()
CHINESE = (
    "数据 数据库 设计 我们 今天 问题 系统 用户 服务器 学习 模型 训练 部署 测试 代码 性能 优化 索引 "
    "查询 网络 时间 工作 需要 可以 如何 使用 方法 功能 开发 项目 文件 配置 版本 错误 日志 缓存 "
    "安全 接口 前端 后端 架构 分析 报告 会议 计划 客户 产品 市场 旅行 天气 音乐 电影 晚饭 预算"
).split()
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "llama-3-70b", "qwen2.5-72b"]

# What people type into the box, by kind. Each is run for every sampled user.
SEARCHES = {
    "one common word": "python",
    "two words": "database migration",
    "rare word": None,  # a long-tail word, picked from the vocabulary
    "phrase": '"connection pool"',
    "word -excluded": "deploy -kubernetes",
    "word role:": "error role:assistant",
    "word after:": "docker after:2025-01-01",
    "in:title": "recipe in:title",
    "model: filter": "cache model:claude",
    "chinese 3+ chars": "数据库设计",
    "chinese 2 chars": "索引",
    "page 2": "server",
}


class Words:
    """Zipf-distributed English (real words first, then a long tail) and Chinese."""

    def __init__(self, rng: random.Random, tail: int = 30000):
        tail_words = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(tail)})
        rng.shuffle(tail_words)
        head = FUNCTION_WORDS + TOPIC_WORDS + PHRASES
        self.english = head + tail_words
        self.english_weights = _zipf_cumulative(len(self.english))
        self.chinese_weights = _zipf_cumulative(len(CHINESE))
        self.rare = self.english[min(len(head) + 5000, len(self.english) - 1)]
        self.rng = rng

    def sentence(self) -> str:
        words = self.rng.choices(self.english, cum_weights=self.english_weights, k=self.rng.randint(6, 22))
        return words[0].capitalize() + " " + " ".join(words[1:]) + self.rng.choice(".....?!:")

    def chinese_sentence(self) -> str:
        words = self.rng.choices(CHINESE, cum_weights=self.chinese_weights, k=self.rng.randint(5, 14))
        return "".join(words) + self.rng.choice("。。。？！")

    def message(self, role: str, chinese: bool) -> str:
        rng = self.rng
        if role == "user":
            count = rng.randint(1, 3) if rng.random() > 0.08 else int(rng.lognormvariate(3, 0.8))
        else:  # a paragraph to several pages
            count = min(300, max(1, int(rng.lognormvariate(2.2, 0.9))))
        make = self.chinese_sentence if chinese else self.sentence
        sentences = [make() for _ in range(count)]
        if not chinese and rng.random() < 0.03:
            sentences.insert(rng.randrange(len(sentences) + 1), self.chinese_sentence())
        paragraphs = [" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5)]
        return "\n\n".join(paragraphs)


def _zipf_cumulative(n: int) -> list[float]:
    total, cumulative = 0.0, []
    for rank in range(n):
        total += 1 / (rank + 2.7)
        cumulative.append(total)
    return cumulative


# -- generating and loading


def corpus(messages: int, rng: random.Random, words: Words):
    """Yields (users, then) conversation rows and their message rows, in id order."""
    users = max(50, messages // 500)
    # How much history each person has: long-tailed (lognormal), the heaviest ~25x the median.
    activity = [rng.lognormvariate(0, 1.2) for _ in range(users)]
    start = datetime(2023, 1, 1, tzinfo=UTC)
    span = (datetime(2026, 1, 1, tzinfo=UTC) - start).total_seconds()
    message_id = conversation_id = 0
    while message_id < messages:
        conversation_id += 1
        owner = rng.choices(range(1, users + 1), weights=activity)[0]
        length = min(messages - message_id, max(1, min(400, int(rng.lognormvariate(2.0, 1.0)))))
        chinese = rng.random() < 0.05
        model_index = rng.randrange(len(MODELS))
        at = start + timedelta(seconds=rng.random() * span)
        rows = []
        for i in range(length):
            message_id += 1
            role = "user" if i % 2 == 0 else "assistant"
            at += timedelta(seconds=rng.randint(5, 600))
            rows.append((message_id, conversation_id, role, words.message(role, chinese),
                         MODELS[model_index] if role == "assistant" else "", at))
        title = " ".join(rows[0][3].split()[:6])[:60] or "New chat"
        yield (conversation_id, owner, title, model_index + 1, rows[0][5], at), rows


def heavy_corpus(messages: int, rng: random.Random, words: Words):
    """One member's history: conversations of 25 messages, all theirs, from a small vocabulary
    (the common English words and the topics), so that each word is in a large share of them."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    message_id = conversation_id = 0
    while message_id < messages:
        conversation_id += 1
        at = start + timedelta(seconds=conversation_id * 3600)
        rows = []
        for i in range(min(25, messages - message_id)):
            message_id += 1
            role = "user" if i % 2 == 0 else "assistant"
            at += timedelta(seconds=rng.randint(5, 600))
            count = rng.randint(1, 2) if role == "user" else rng.randint(2, 8)
            text = " ".join(words.sentence() for _ in range(count))
            rows.append((message_id, conversation_id, role, text, MODELS[0] if role == "assistant" else "", at))
        title = " ".join(rows[0][3].split()[:6])[:60] or "New chat"
        yield (conversation_id, 1, title, 1, rows[0][5], at), rows


def build(vendor: str, messages: int, heavy: bool = False) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from conversations.models import Model, Provider

    print(f"Building a corpus of {messages:,} messages ({vendor})", flush=True)
    call_command("migrate", verbosity=0)
    rng = random.Random(5)
    words = Words(rng)
    users = max(50, messages // 500)
    get_user_model().objects.bulk_create(
        [get_user_model()(username=f"user{i}", password="!") for i in range(1, users + 1)])
    provider = Provider.objects.create(name="bench", base_url="http://127.0.0.1:9/v1")
    Model.objects.bulk_create([Model(provider=provider, upstream_id=m, name=m) for m in MODELS])
    started, done = time.monotonic(), 0
    load = _load_postgres if vendor == "postgresql" else _load_sqlite
    rows = heavy_corpus(messages, rng, Words(rng, tail=0)) if heavy else corpus(messages, rng, words)
    with transaction.atomic():
        for done in load(connection, rows):
            rate = done / (time.monotonic() - started)
            print(f"  {done:,} messages, {rate:,.0f}/s", end="\r", flush=True)
    print(f"\n  loaded in {time.monotonic() - started:.0f} s; analysing", flush=True)
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            for table in ("conversations_conversation", "conversations_message"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("ANALYZE")


CONVERSATION_COLUMNS = "id, owner_id, title, model_id, created_at, updated_at, system_prompt"
MESSAGE_COLUMNS = ("id, conversation_id, role, content, model, created_at, updated_at, reasoning, "
                   "status, error, finish_reason")


def _load_postgres(connection, rows):
    done = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own, for COPY
        batch: list = []
        for conversation, messages in rows:
            batch.append((conversation, messages))
            if len(batch) >= 2000:
                done += _copy(raw, batch)
                yield done
                batch = []
        done += _copy(raw, batch)
        yield done


def _copy(raw, batch) -> int:
    with raw.copy(f"COPY conversations_conversation ({CONVERSATION_COLUMNS}) FROM STDIN") as copy:
        for conversation, _ in batch:
            copy.write_row((*conversation, ""))
    count = 0
    with raw.copy(f"COPY conversations_message ({MESSAGE_COLUMNS}) FROM STDIN") as copy:
        for _, messages in batch:
            for mid, cid, role, content, model, at in messages:
                copy.write_row((mid, cid, role, content, model, at, at, "", "complete", "", ""))
                count += 1
    return count


def _load_sqlite(connection, rows):
    done = 0
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size = -200000")
        for conversation, messages in rows:
            cid, owner, title, model, created, updated = conversation
            cursor.execute(f"INSERT INTO conversations_conversation ({CONVERSATION_COLUMNS}) "
                           "VALUES (%s, %s, %s, %s, %s, %s, '')",
                           (cid, owner, title, model, _sqlite_time(created), _sqlite_time(updated)))
            cursor.executemany(
                f"INSERT INTO conversations_message ({MESSAGE_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, '', 'complete', '', '')",
                [(m, c, r, t, mo, _sqlite_time(at), _sqlite_time(at)) for m, c, r, t, mo, at in messages])
            done += len(messages)
            if cid % 500 == 0:
                yield done
        yield done


def _sqlite_time(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


# -- measuring


HEAVY_SEARCHES = {
    "one common word": "python",
    "most common word": "the",
    "two common words": "database migration",
    "three common words": "server error query",
    "phrase": '"connection pool"',
    "word -excluded": "deploy -kubernetes",
    "word role:": "error role:assistant",
    "page 2": "server",
}


def measure_heavy(vendor: str, repeat: int) -> None:
    """The member with the most messages, searching common words `repeat` times each."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    counts = _messages_per_owner(connection)
    heaviest = max(counts, key=counts.get)
    print(f"{sum(counts.values()):,} messages; searching as the member with {counts[heaviest]:,} of them")
    client = Client()
    client.force_login(get_user_model().objects.get(pk=heaviest))
    print(f"\n{'search':<20} {'example':<24} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'results':>8}")
    everything = []
    for kind, text in HEAVY_SEARCHES.items():
        params = {"q": text, "page": 2 if kind == "page 2" else 1}
        client.get("/search/", params, HTTP_HX_REQUEST="true")  # warm
        values, found = [], 0
        for _ in range(repeat):
            began = time.perf_counter()
            response = client.get("/search/", params, HTTP_HX_REQUEST="true")
            values.append((time.perf_counter() - began) * 1000)
            found = response.content.count(b'class="search-hit"')
        everything += values
        print(f"{kind:<20} {text[:24]:<24} {_pct(values, 50):>7.1f} {_pct(values, 95):>7.1f} {max(values):>7.1f} {found:>8}")
    print(f"{'all':<20} {'':<24} {_pct(everything, 50):>7.1f} {_pct(everything, 95):>7.1f} "
          f"{max(everything):>7.1f}   ({len(everything)} requests)")


def measure(vendor: str, users: int, seed: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    rng = random.Random(seed)
    words = Words(random.Random(5))  # the same vocabulary as the corpus
    searches = dict(SEARCHES, **{"rare word": words.rare})
    counts = _messages_per_owner(connection)
    owners = list(counts)
    sample = sorted(set(rng.choices(owners, weights=[counts[o] for o in owners], k=users)))
    heaviest = max(owners, key=counts.get)
    print(f"{sum(counts.values()):,} messages, {len(owners):,} users; searching as {len(sample)} users "
          f"with {min(counts[o] for o in sample):,} to {max(counts[o] for o in sample):,} messages "
          f"(median {statistics.median(counts[o] for o in sample):,.0f}); the heaviest has {counts[heaviest]:,}")
    client = Client()
    timings: dict[str, list[float]] = {kind: [] for kind in searches}
    found: dict[str, list[int]] = {kind: [] for kind in searches}
    for round_ in ("warm-up", "measured"):
        for owner in sample if round_ == "measured" else sample[:5]:
            client.force_login(get_user_model().objects.get(pk=owner))
            for kind, text in searches.items():
                params = {"q": text, "page": 2 if kind == "page 2" else 1}
                began = time.perf_counter()
                response = client.get("/search/", params, HTTP_HX_REQUEST="true")
                elapsed = (time.perf_counter() - began) * 1000
                assert response.status_code == 200, (text, response.status_code)
                if round_ == "measured":
                    timings[kind].append(elapsed)
                    found[kind].append(response.content.count(b'class="search-hit"'))
    print(f"\n{'search':<20} {'example':<24} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'results':>8}")
    everything = []
    for kind, values in timings.items():
        everything += values
        print(f"{kind:<20} {searches[kind][:24]:<24} {_pct(values, 50):>7.1f} {_pct(values, 95):>7.1f} "
              f"{max(values):>7.1f} {statistics.mean(found[kind]):>8.1f}")
    print(f"{'all':<20} {'':<24} {_pct(everything, 50):>7.1f} {_pct(everything, 95):>7.1f} "
          f"{max(everything):>7.1f}   ({len(everything)} requests)")
    print("\n" + index_sizes(vendor, connection))


def _messages_per_owner(connection) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.owner_id, count(*) FROM conversations_message m "
                       "JOIN conversations_conversation c ON c.id = m.conversation_id GROUP BY c.owner_id")
        return dict(cursor.fetchall())


def _pct(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(len(ordered) * percent / 100) - 1)]


def index_sizes(vendor: str, connection) -> str:
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("""
                SELECT relname, pg_relation_size(oid) FROM pg_class
                WHERE relname IN ('conversations_message_search', 'conversations_message_search_cjk',
                                  'conversations_message_search_cjk_recent',
                                  'conversations_conversation_search')""")
            sizes = dict(cursor.fetchall())
            cursor.execute("SELECT sum(pg_column_size(search_vector)), sum(pg_column_size(content)), "
                           "pg_total_relation_size('conversations_message') FROM conversations_message")
            vectors, text, table = cursor.fetchone()
            sizes["search_vector column (tsvector)"] = vectors
        else:
            cursor.execute("""
                SELECT CASE WHEN name LIKE 'conversations_message_fts%' THEN 'message words (FTS5)'
                            WHEN name LIKE 'conversations_message_cjk%' THEN 'message CJK (FTS5 trigram)'
                            ELSE 'titles (FTS5)' END, sum(pgsize)
                FROM dbstat WHERE name LIKE 'conversations_%_fts%' OR name LIKE 'conversations_message_cjk%'
                GROUP BY 1""")
            sizes = dict(cursor.fetchall())
            cursor.execute("SELECT sum(length(CAST(content AS BLOB))) FROM conversations_message")
            (text,) = cursor.fetchone()
            cursor.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            (table,) = cursor.fetchone()
    lines = [f"  {name:<36} {size / 2**20:>9,.1f} MiB" for name, size in sorted(sizes.items())]
    lines.append(f"  {'search total':<36} {sum(sizes.values()) / 2**20:>9,.1f} MiB")
    lines.append(f"  {'message text, for scale':<36} {text / 2**20:>9,.1f} MiB")
    lines.append(f"  {'database / message table total':<36} {table / 2**20:>9,.1f} MiB")
    return "index sizes:\n" + "\n".join(lines)


# -- the command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=["sqlite", "postgres"])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--database-url", help="default: var/bench.sqlite3 or postgres://postgres@127.0.0.1:5432/bench_search")
    parser.add_argument("--fresh", action="store_true", help="rebuild the corpus even if one of this size exists")
    parser.add_argument("--users", type=int, default=40, help="how many users search")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--heavy-user", action="store_true",
                        help="one member owns every message, from a small vocabulary; common words searched")
    parser.add_argument("--repeat", type=int, default=20, help="--heavy-user: times each search is timed")
    args = parser.parse_args()

    name = "bench_heavy" if args.heavy_user else "bench"
    url = args.database_url or (f"sqlite:///{ROOT / 'var' / f'{name}.sqlite3'}" if args.backend == "sqlite"
                                else f"postgres://postgres@127.0.0.1:5432/{name}_search")
    from cryptography.fernet import Fernet

    os.environ.update(DATABASE_URL=url, DEBUG="0", SECRET_KEY="bench", LOCAL_MODEL="0",
                      CHATSITE_ENCRYPTION_KEYS=Fernet.generate_key().decode(), ALLOWED_HOSTS="testserver")
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
    if args.fresh or not _has_corpus(url, args.messages):
        _recreate(url)
        import django

        django.setup()
        build("postgresql" if args.backend == "postgres" else "sqlite", args.messages, args.heavy_user)
    else:
        import django

        django.setup()
    vendor = "postgresql" if args.backend == "postgres" else "sqlite"
    if args.heavy_user:
        measure_heavy(vendor, args.repeat)
    else:
        measure(vendor, args.users, args.seed)


def _has_corpus(url: str, messages: int) -> bool:
    try:
        if url.startswith("sqlite"):
            import sqlite3

            path = url.removeprefix("sqlite:///")
            if not Path(path).exists():
                return False
            with sqlite3.connect(path) as db:
                return db.execute("SELECT count(*) FROM conversations_message").fetchone()[0] == messages
        import psycopg

        with psycopg.connect(url) as db:
            return db.execute("SELECT count(*) FROM conversations_message").fetchone()[0] == messages
    except Exception:
        return False


def _recreate(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
