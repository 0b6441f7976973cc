"""Database connections of the async code: kept open, and checked rather than reopened.

Under ASGI, the websockets, the reply tasks and /v1 make their queries through Django's async ORM
and `sync_to_async`, which run them all on one thread (thread-sensitive), so one connection a
process serves them. What Django's request signals do for a page (close_old_connections: with
CONN_MAX_AGE=0, the default, the connection is closed after each request) would here close that
connection after every call, and the next query would open a new one: the set-up of a SQLite
connection, the fork of a PostgreSQL backend, several times a chat message (channels'
`database_sync_to_async` does exactly that; scripts/bench_capacity.py's profile found it).

So the connection is kept, and what recycling is for, replacing a connection that died (a
database restart, a killed backend), is done with a flag: each websocket action, reply and /v1
request marks every connection for a health check (CONN_HEALTH_CHECKS), so its next query checks
the connection first, in the hop that query takes anyway, and reconnects if it is dead; a query
that failed marks them too (`forget_if_broken`).
"""

from __future__ import annotations

import threading
import weakref

from django.db import connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver

_connections: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()


@receiver(connection_created, dispatch_uid="remember-connection")
def _remember(sender, connection, **kwargs):
    with _lock:
        _connections.add(connection)


def check_on_next_use() -> None:
    """A flag on each connection (read by the thread that owns it), no hop: its next query runs a
    health check first and reconnects if the connection died."""
    with _lock:
        known = list(_connections)
    for connection in known:
        connection.health_check_done = False


def forget_if_broken() -> None:
    """In the thread that queries: close this thread's connections that had an error and no longer
    answer (the next query opens a new one). Unlike close_old_connections(), a healthy
    connection stays open whatever its age."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and connection.errors_occurred and not connection.is_usable():
            connection.close()
