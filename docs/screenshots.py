"""The README's screenshots, taken from a running site by Playwright and Debian's chromium.

    .venv/bin/python docs/screenshots.py
    .venv/bin/python docs/screenshots.py --url http://127.0.0.1:8000 --username NAME --password SECRET

Without --url it starts a site of its own on a free port: a throwaway SQLite database and var/
folder (deleted afterwards), demo content (one member, a few conversations, one of them with two
versions of a reply), and the tests' loopback upstream (tests/upstream.py) as its only provider,
scripted to answer the demo question; it asks that question in the browser, so the reply on the
screenshots is streamed and recorded as any other. The local model is left off: the pictures
never depend on it. With --url it logs in to that site as it is and shows its newest
conversation in its list (or --path), sending nothing.

Writes docs/screenshot-desktop-light.png and docs/screenshot-desktop-dark.png (1280 x 800) and
docs/screenshot-phone.png (390 x 844, the conversation list open as a drawer).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chromium import CHROMIUM, CHROMIUM_ARGS, log_in  # noqa: E402
from tests.upstream import Upstream, last_user_text  # noqa: E402

DOCS = ROOT / "docs"
USERNAME, PASSWORD = "sam", "demo-password-for-screenshots"
QUESTION = "And a named tuple? Show me one."

FIRST_REPLY = "Use a **tuple** for a fixed record, a **list** for a collection that grows."
SECOND_REPLY = """Both hold a sequence; the difference is what you promise about it:

| | list | tuple |
|---|---|---|
| changes after creation | yes: `append`, `sort` | no (immutable) |
| usual content | many items of one kind | a fixed record of fields |
| usable as a dict key | no | yes, if its items are |

```python
point = (3, 4)          # a record: x and y
visits = ["Lisbon"]     # a collection
visits.append("Porto")
```

Reach for a tuple when the length is part of the meaning (a point, a date, a row)."""
LIVE_REPLY = """A named tuple is a tuple whose fields have names, so the record documents itself:

```python
from typing import NamedTuple

class Point(NamedTuple):
    x: float
    y: float

p = Point(3, 4)
print(p.x, p[1])        # 3 4
```

It stays immutable and unpacks like any tuple (`x, y = p`); the distance from the origin is
$\\sqrt{x^2 + y^2} = 5$."""
OTHER_CONVERSATIONS = [  # title, question, days ago, pinned
    ("Lisbon trip in April", "Plan four days in Lisbon in April.", 2, True),
    ("Regex for ISO 8601 dates", "A regex that matches ISO 8601 dates?", 0, False),
    ("Summarise the Q3 report", "Summarise this report in five bullet points.", 1, False),
    ("SQL window functions", "Explain window functions with an example.", 4, False),
    ("Birthday poem for Sam", "A short birthday poem for a colleague.", 12, False),
    ("Liveness vs readiness probes", "Liveness or readiness probe: which one restarts a pod?", 45, False),
]


class DemoUpstream(Upstream):
    """The tests' loopback upstream, answering the demo question (30 ms a word: the "slow" model)."""

    def script(self, model: str, body: dict) -> tuple[str, str, list]:
        return "", LIVE_REPLY if last_user_text(body) == QUESTION else "A demo answer.", []


def own_site(folder: Path) -> tuple[str, subprocess.Popen, Upstream, int]:
    """A site in `folder` with demo content; its URL, its process, the upstream, the demo
    conversation's id."""
    from cryptography.fernet import Fernet

    os.environ.update(DATABASE_URL=f"sqlite:///{folder}/demo.sqlite3", CHATSITE_VAR_DIR=str(folder), DEBUG="1",
                      SECRET_KEY="screenshots", CHATSITE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
                      LOCAL_MODEL="0", CHAT_AUTO_TITLE="0", DJANGO_SETTINGS_MODULE="chatsite.settings")
    for name in ("REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    upstream = DemoUpstream().start()
    conversation_id = demo_content(upstream.base_url)
    from tests.live import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url, process, upstream, conversation_id
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the demo site did not start")
        time.sleep(0.2)


def demo_content(base_url: str) -> int:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from conversations.chat import tree
    from conversations.models import Conversation, Message, Model, Provider, UsageRecord

    user = get_user_model().objects.create_superuser(USERNAME, "sam@example.com", PASSWORD)
    provider = Provider(name="demo", base_url=base_url)
    provider.save()
    model = Model.objects.create(provider=provider, upstream_id="slow", name="demo-model", display_name="Demo model",
                                 input_price=Decimal("0.15"), output_price=Decimal("0.60"), context_window=128_000)
    now = timezone.now()
    for title, question, days, pinned in OTHER_CONVERSATIONS:
        other = Conversation.objects.create(owner=user, title=title, model=model, pinned=pinned, title_set_by_member=True)
        Message.objects.create(conversation=other, role="user", content=question)
        Conversation.objects.filter(pk=other.pk).update(updated_at=now - timedelta(days=days, hours=1))
    chat = Conversation.objects.create(owner=user, title="Lists or tuples in Python?", model=model, title_set_by_member=True)
    question = tree.add(chat, None, role="user", content="When should I use a tuple instead of a list in Python?")
    tree.add(chat, question.id, role="assistant", content=FIRST_REPLY, model=model.name)
    # Regenerate wrote version 2, with its usage record (the line under the reply).
    tree.add(chat, question.id, role="assistant", content=SECOND_REPLY, model=model.name, request_id="demo-1")
    UsageRecord.objects.create(request_id="demo-1", source="chat", user=user, model=model, provider=provider,
                               model_name=model.name, prompt_tokens=31, completion_tokens=142, ttft_ms=212,
                               duration_ms=4950, cost=model.cost(31, 142))
    return chat.pk


def shoot(url: str, username: str, password: str, path: str | None, ask: bool, out: Path = DOCS) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM:
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # name: viewport, colour scheme, whether to ask the demo question first (once, on the
        # site of its own: the pictures after it show its streamed reply)
        pictures = {"desktop-light": ({"width": 1280, "height": 800}, "light", False),
                    "desktop-dark": ({"width": 1280, "height": 800}, "dark", ask),
                    "phone": ({"width": 390, "height": 844}, "light", False)}
        for name, (viewport, scheme, asking) in pictures.items():
            context = browser.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=1)
            page = context.new_page()
            log_in(page, url, username, password)
            if path:
                page.goto(f"{url}{path}")
            else:  # the first in the list
                page.goto(url + page.locator("#conversation-list .conversation-item > a").first.get_attribute("href"))
            expect(page.locator(".message").last).to_be_visible()
            if asking:
                page.get_by_label("Message").fill(QUESTION)
                page.get_by_role("button", name="Send").click()
                expect(page.locator(".message.assistant").last.locator(".stats")).to_be_visible()  # written
                expect(page.get_by_role("button", name="Send")).to_be_visible()
                page.locator(".message.assistant").last.scroll_into_view_if_needed()
            if name == "phone":
                page.get_by_role("button", name="Menu").click()
                expect(page.locator("#layout.drawer-open")).to_be_visible()
                page.wait_for_timeout(400)  # the drawer's slide (0.2 s)
            file = out / f"screenshot-{name}.png"
            page.screenshot(path=file)
            print(f"{file}: {file.stat().st_size:,} bytes")
            context.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running site (default: start one with demo content)")
    parser.add_argument("--username", default=USERNAME)
    parser.add_argument("--password", default=PASSWORD)
    parser.add_argument("--path", help="the page to show, e.g. /c/12/ (default: the first conversation listed)")
    parser.add_argument("--out", type=Path, default=DOCS, help="the folder to write them in (default: docs/)")
    args = parser.parse_args()
    if args.url:
        shoot(args.url.rstrip("/"), args.username, args.password, args.path, ask=False, out=args.out)
        return
    with tempfile.TemporaryDirectory(prefix="chatsite-screenshots-") as folder:
        url, process, upstream, conversation_id = own_site(Path(folder))
        try:
            shoot(url, USERNAME, PASSWORD, args.path or f"/c/{conversation_id}/", ask=True, out=args.out)
        finally:
            process.terminate()
            process.wait(10)
            upstream.stop()


if __name__ == "__main__":
    main()
