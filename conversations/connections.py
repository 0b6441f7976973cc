"""Database connections of the async code: kept open, and checked rather than reopened.

Under ASGI, the websockets, the reply tasks and /v1 make their queries through Django's async ORM
and `sync_to_async`, which run them all on one thread (thread-sensitive), so one connection a
process serves them. What Django's request signals do for a page (close_old_connections: with
CONN_MAX_AGE=0, the default, the connection is closed after each request) would here close that
connection after every call, and the next query would open a new one: the set-up of a SQLite
connection, the fork of a PostgreSQL backend, several times a chat message (channels'
`database_sync_to_async` does exactly that; scripts/bench_capacity.py's profile found it).

So the connection is kept, and what recycling is for, replacing a connection that died (a
database restart, a killed backend), is done in the database thread before each websocket
action, each usage flush and each hop of /v1's queries (`check_here`, `aquery`): PostgreSQL's
pooled connection is given back and the next query takes one the pool has checked; a query that
failed closes it (`forget_if_broken`).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connections


def check_here() -> None:
    """In the thread that queries (never from another one: a connection being opened there at that
    moment would run its check before autocommit is on, and be left inside a transaction): this
    thread's connections are checked before their next use. A pooled one (PostgreSQL) is given
    back, so the next query takes one the pool has checked; any other gets a health check
    (CONN_HEALTH_CHECKS) on its next query."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue  # none to check, or one inside a transaction (a test's): it must stay
        if getattr(connection, "pool", None):
            connection.close()
        else:
            connection.health_check_done = False


def forget_if_broken() -> None:
    """In the thread that queries: close this thread's connections that had an error and no longer
    answer (the next query opens a new one). Unlike close_old_connections(), a healthy
    connection stays open whatever its age."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and connection.errors_occurred and not connection.is_usable():
            connection.close()


async def aquery(fn, *args):
    """`fn(*args)` in the database thread, its connections checked first (check_here): a request's
    queries and their check in one hop. /v1 reads the database only through here, so a request
    whose key and model are cached makes no hop at all (a hop each, a burst of requests queued on
    the database thread, and each waited there for the others: tens of milliseconds before its
    upstream call, scripts/bench_gateway.py)."""

    def checked():
        check_here()
        return fn(*args)

    return await sync_to_async(checked)()
