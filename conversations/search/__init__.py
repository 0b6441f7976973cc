"""Conversation history search: one person's conversations, ranked, with highlighted passages.

    page = search(user, 'deploy "blue green" -helm model:gpt after:2024-12-31', page=1)

query.py parses the box's syntax; sqlite.py (FTS5) and postgres.py (tsvector, pg_trgm) find the
matches, both through the SQL shared in sql.py; highlight.py turns the marked passages into HTML.
The whole page is one SQL query, whatever the number of matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString

from conversations.search import highlight, postgres, sqlite
from conversations.search.query import Query, parse
from conversations.search.sql import COLUMNS

PAGE_SIZE = 20
MAX_PAGES = 50  # deep offsets cost more and nobody reads that far; refine the query instead


@dataclass
class Result:
    conversation_id: int
    message_id: int | None
    title: SafeString
    passage: SafeString
    date: datetime
    model: str
    role: str

    @property
    def url(self) -> str:
        if self.message_id is None:
            return f"/c/{self.conversation_id}/"
        return f"/c/{self.conversation_id}/?around={self.message_id}#msg-{self.message_id}"


@dataclass
class Page:
    query: Query
    number: int = 1
    results: list[Result] = field(default_factory=list)
    has_next: bool = False


def search(user, text: str, page: int = 1) -> Page:
    query = parse(text)
    page = max(1, min(page, MAX_PAGES))
    if query.is_empty:
        return Page(query, page)
    backend = postgres if connection.vendor == "postgresql" else sqlite
    sql = backend.page(user.pk, query, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    with connection.cursor() as cursor:
        cursor.execute(sql.sql, sql.params)
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    results = [_result(query, row) for row in rows[:PAGE_SIZE]]
    return Page(query, page, results, has_next=len(rows) > PAGE_SIZE and page < MAX_PAGES)


def _result(query: Query, row: dict) -> Result:
    title = row["title_marked"] or highlight.clean(row["title"])
    text = row["passage"] or ""
    if not query.has_words and text:
        text = highlight.passage(text, query.cjk)  # the database gave the whole message
    return Result(
        conversation_id=row["conversation_id"],
        message_id=row["message_id"],
        title=highlight.marked_html(title, query.cjk),
        passage=highlight.marked_html(text, query.cjk),
        date=_datetime(row["message_created_at"] or row["conversation_updated_at"]),
        model=row["message_model"] or row["conversation_model"] or "",
        role=row["role"] or "",
    )


def _datetime(value: datetime | str) -> datetime:
    """Raw SQLite rows hold datetimes as UTC text; PostgreSQL's are already datetimes."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
