"""`manage.py serve`: the production server (`make serve WORKERS=2`), checked, then exec'd.

Uvicorn with `--workers N`: its supervisor restarts a worker that dies and, on SIGHUP, replaces
the workers one at a time (each replacement serves before the old one gets SIGTERM), a rolling
restart with no new dependency. Gunicorn is not used: it would add a package for what Uvicorn's
own supervisor does here.

More than one worker needs what the workers share: PostgreSQL (`DATABASE_URL`; SQLite allows one
writer) and Redis (`REDIS_URL`: the channel layer between processes, the cache and the limits).
Without them it refuses, saying so, rather than serving a site whose tabs miss replies.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def refusal(workers: int) -> str:
    """Why this configuration cannot be served, or ""."""
    if settings.DEBUG:
        return "DEBUG is on: the production server runs with DEBUG=0 (make serve sets it)."
    if workers < 1:
        return "--workers must be 1 or more."
    if workers > 1:
        missing = []
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            missing.append("DATABASE_URL (PostgreSQL: SQLite takes one writer at a time)")
        if not settings.REDIS_URL:
            missing.append("REDIS_URL (Redis: the processes reach each other's tabs through it)")
        if missing:
            return (f"{workers} workers need a database and a Redis they all share; set "
                    + " and ".join(missing) + ", or serve one worker (WORKERS=1).")
    return ""


def metrics_dir() -> Path:
    """prometheus-client's multiprocess folder: emptied at each start (files of dead workers
    would be summed in forever)."""
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.VAR_DIR / "prometheus")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


class Command(BaseCommand):
    help = "Serve the site in production: Uvicorn workers (make serve WORKERS=2)."

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                            help="the proxies whose X-Forwarded-For/-Proto are believed")

    def handle(self, *args, workers: int, host: str, port: int, forwarded_allow_ips: str, **options):
        if reason := refusal(workers):
            raise CommandError(reason)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir())
        os.environ["DEBUG"] = "0"
        command = [
            sys.executable, "-m", "uvicorn", "chatsite.asgi:application", "--host", host, "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
            "--proxy-headers", "--forwarded-allow-ips", forwarded_allow_ips,
            # /v1 streams get the chat's grace period (conversations/lifecycle.py).
            "--timeout-graceful-shutdown", str(int(settings.CHAT_SHUTDOWN_GRACE_SECONDS)),
            "--no-access-log",  # chatsite.access writes one line per request, with no secret in it
            # The chat's frames are small fragments of HTML, 20 a second a reply: compressing each
            # cost more CPU than everything else done to send it (scripts/bench_capacity.py).
            "--ws-per-message-deflate", "false",
        ]
        self.stdout.write(f"Chatsite is serving on http://{host}:{port}/ with {workers} worker(s)")
        self.stdout.flush()
        os.execv(sys.executable, command)
