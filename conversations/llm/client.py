"""All upstream HTTP: the one place Chatsite talks to OpenAI-compatible providers.

Every call goes through a shared `httpx2.AsyncClient` (one per event loop, so connections are
pooled and reused) with explicit connect and read timeouts. httpx2 is httpx's maintained
successor (pydantic's, the official openai SDK's own client): same API, and a connection pool that
holds up under concurrency, where httpx's scans every pooled connection for each request
(scripts/bench_gateway.py: about 2-3x the streams per second at 50 concurrent). Whatever goes wrong, a refused
connection, a timeout, an error status, a stream that breaks or says something that is not JSON,
surfaces as one exception, `UpstreamError`, carrying the HTTP status the gateway should answer
with and whether another model may be tried instead (`retryable`).
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2 as httpx
from django.conf import settings


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the client needs to know of a provider."""

    base_url: str
    api_key: str = ""
    timeout: float = 300.0
    name: str = ""

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class Chunk:
    """One streamed chunk: parsed, with the upstream's own JSON text kept while unchanged, so a
    relay can pass the bytes on without encoding them again."""

    __slots__ = ("data", "raw")

    def __init__(self, data: dict, raw: str | None = None):
        self.data = data
        self.raw = raw

    def set(self, key: str, value) -> None:
        if self.data.get(key) != value:
            self.data[key] = value
            self.raw = None

    def pop(self, key: str) -> None:
        if key in self.data:
            del self.data[key]
            self.raw = None

    def json(self) -> str:
        if self.raw is None:
            self.raw = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return self.raw


class UpstreamError(Exception):
    """An upstream call that failed. `status` is what the gateway answers with: the upstream's own
    4xx (but 401/403, which mean our provider key is wrong: 502), 429 passed through, 502 for a bad
    response, 503 when it cannot be reached, 504 when it timed out.

    `message` is Chatsite's own words, what members see (the /v1 error, the chat): the status, the
    provider's error code, a summary. An upstream's own text can carry what members must not see
    (an upstream that echoes the key it was sent put the provider's key in it): it goes to `detail`
    only, for admins (the usage record), with anything key-shaped and the provider's key redacted.
    The one exception is a client error (400, 404, 422...): it is about the member's own request
    (context length, a bad parameter), so its message is passed on, redacted the same way.
    `code`, `param` and `retry_after` are the upstream's own (OpenAI's error fields, Retry-After)."""

    def __init__(self, status: int, message: str, *, retryable: bool = False, upstream_status: int | None = None,
                 detail: str = "", code: str | None = None, param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.upstream_status = upstream_status
        self.detail = detail or message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, upstream: Upstream, status: int, body: bytes, headers=None) -> UpstreamError:
        error = _UpstreamErrorBody(body, upstream)
        name = upstream.name or "the provider"
        code = f", code {error.code}" if error.code else ""
        fields = {"upstream_status": status, "code": error.code, "param": error.param,
                  "detail": f"{name}: upstream HTTP {status}{code}: {error.text or 'no message'}"}
        if status == 429:
            return cls(429, f"{name}: rate limited upstream (HTTP 429{code}); try again later.", retryable=True,
                       retry_after=_retry_after(headers), **fields)
        if status >= 500:
            return cls(502, f"{name}: upstream error {status}{code}.", retryable=True, **fields)
        if status in (401, 403):
            return cls(502, f"{name}: the provider refused our API key (upstream HTTP {status}{code}); an admin has "
                            "to check it.", retryable=True, **fields)
        return cls(status, f"{name}: the upstream refused the request (HTTP {status}{code}): "
                           f"{error.text[:300] or 'no reason given'}", **fields)

    @classmethod
    def from_stream_error(cls, upstream: Upstream, payload: str) -> UpstreamError:
        """An `{"error": ...}` event in the middle of a stream."""
        error = _UpstreamErrorBody(payload.encode(), upstream)
        name = upstream.name or "the provider"
        code = f" (code {error.code})" if error.code else ""
        return cls(502, f"{name}: the upstream sent an error event mid-reply{code}.", code=error.code,
                   param=error.param, detail=f"{name}: upstream error event{code}: {error.text or 'no message'}")


# Bearer tokens, prefixed keys (sk-..., key_...) and long runs of letters and digits: secrets'
# shapes, redacted from what upstreams say before even admins see it.
_KEY_SHAPED = re.compile(
    r"(?i)\bbearer\s+\S+"
    r"|\b(?:sk|pk|rk|ak|api|key|token|secret)[-_][A-Za-z0-9_\-]{6,}"
    r"|(?=[A-Za-z_\-]*[0-9])(?=[0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{32,}"
)


def redact(text: str, secret: str = "") -> str:
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_SHAPED.sub("[redacted]", text)


class _UpstreamErrorBody:
    """OpenAI's error shape, `{"error": {"message", "code", "param"}}`, or whatever else an
    upstream answered with; every field redacted."""

    def __init__(self, body: bytes, upstream: Upstream):
        try:
            data = json.loads(body)
        except ValueError:
            data = body.decode(errors="replace")[:500].strip()
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            text, code, param = error.get("message") or json.dumps(error)[:500], error.get("code"), error.get("param")
        else:
            text, code, param = str(error)[:500], None, None
        self.text = redact(str(text), upstream.api_key)[:2000]
        self.code = self._field(code, upstream)
        self.param = self._field(param, upstream)

    @staticmethod
    def _field(value, upstream: Upstream) -> str | None:
        if value is None or isinstance(value, dict | list):
            return None
        return redact(str(value), upstream.api_key)[:100] or None


def _retry_after(headers) -> int | None:
    """The upstream's Retry-After, in seconds (the HTTP-date form is rare among model APIs)."""
    value = (headers or {}).get("retry-after", "").strip()
    return max(1, int(value)) if value.isdigit() and len(value) < 7 else None


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def http_client() -> httpx.AsyncClient:
    """The shared client of the running event loop (an AsyncClient cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
            follow_redirects=False,
        )
        _clients[loop] = client
    return client


def _timeout(upstream: Upstream) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.UPSTREAM_CONNECT_TIMEOUT,
        read=upstream.timeout,
        write=30.0,
        pool=30.0,
    )


def _translate(exc: httpx.HTTPError, upstream: Upstream) -> UpstreamError:
    """The exception's own text (addresses, OS errors) for admins only."""
    name = upstream.name or "the provider"
    detail = f"{name}: {exc.__class__.__name__}: {redact(str(exc), upstream.api_key)}"
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(504, f"{name}: the upstream did not answer in time", retryable=True, detail=detail)
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError(503, f"{name}: cannot connect to the upstream", retryable=True, detail=detail)
    return UpstreamError(502, f"{name}: the connection to the upstream failed", retryable=True, detail=detail)


class EventBuffer:
    """Server-sent events from the bytes of a stream, as they arrive.

    Only `data:` fields matter to OpenAI-compatible streams (comments, `event:`, `id:` and `retry:`
    are skipped; several data lines make one payload, joined by newlines). It takes whole network
    reads, not lines, so that every event that came in one read goes downstream in one write:
    per-event writes were the largest cost of relaying a fast upstream (scripts/bench_gateway.py).

    Lines end at CR, LF or CRLF only, as the SSE format says: `str.splitlines()` also breaks on
    U+2028, U+2029, U+0085 and a few control characters, which JSON may carry unescaped (vLLM and
    llama.cpp send raw UTF-8), and would cut a chunk in half. A CR that ends one read and an LF
    that starts the next are one line end.
    """

    def __init__(self):
        self._pending = ""
        self._data: list[str] = []
        self._after_cr = False

    def feed(self, text: str) -> list[str]:
        """The payloads of the events that `text` completes."""
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        text = self._pending + text
        lines = _LINE_END.split(text) if "\r" in text else text.split("\n")
        self._pending = lines.pop()  # what follows the last line end: an unfinished line
        payloads = []
        for line in lines:
            if not line:  # a blank line ends an event
                if self._data:
                    payloads.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                self._data.append(line[6:] if line.startswith("data: ") else line[5:])
        return payloads


_LINE_END = re.compile(r"\r\n|\r|\n")


class StreamTruncated(UpstreamError):
    """The upstream's body ended cleanly but the reply did not: no `data: [DONE]` and no
    finish_reason. Without this, half a reply would pass for a whole one."""


async def stream_chat(upstream: Upstream, body: dict) -> AsyncIterator[list[Chunk]]:
    """POST /chat/completions with stream=true; yields the chunks of each network read, until
    [DONE].

    Leaving the loop early (or cancelling the task) closes the response, which cancels the
    upstream request."""
    client = http_client()
    try:
        async with client.stream(
            "POST", upstream.url("/chat/completions"), json=body, headers=upstream.headers, timeout=_timeout(upstream)
        ) as response:
            if response.status_code >= 400:
                raise UpstreamError.from_response(upstream, response.status_code, await response.aread(), response.headers)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                raise UpstreamError(502, f"{upstream.name}: the upstream did not answer with an event stream "
                                         f"({response.headers.get('content-type') or 'no content type'})")
            events, done, ending = EventBuffer(), False, _Ending()
            # After [DONE] the body is still read to its end: a response left half-read cannot go
            # back to the pool, and every request would open a new connection.
            async for text in response.aiter_text():
                batch = []
                for payload in events.feed(text):
                    if done or payload == "[DONE]":
                        done = True
                        continue
                    chunk = _parse_chunk(payload, upstream)
                    ending.observe(chunk.data)
                    batch.append(chunk)
                if batch:
                    yield batch
            if not done and not ending.finished:
                raise StreamTruncated(502, f"{upstream.name}: the upstream's stream ended before the reply was complete "
                                           "(no finish_reason and no [DONE])", retryable=True)
    except httpx.HTTPError as exc:
        raise _translate(exc, upstream) from exc


class _Ending:
    """Whether a stream that ends without [DONE] (which OpenAI always sends) still ended its reply:
    every choice it started has a finish_reason."""

    __slots__ = ("open", "seen")

    def __init__(self):
        self.open: set[int] = set()
        self.seen = False

    def observe(self, chunk: dict) -> None:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            self.seen = True
            index = choice.get("index", 0)
            if choice.get("finish_reason"):
                self.open.discard(index)
            else:
                self.open.add(index)

    @property
    def finished(self) -> bool:
        return self.seen and not self.open


def _parse_chunk(payload: str, upstream: Upstream) -> Chunk:
    try:
        chunk = json.loads(payload)
    except ValueError as exc:
        raise UpstreamError(502, f"{upstream.name}: the upstream sent a chunk that is not JSON") from exc
    if not isinstance(chunk, dict):
        raise UpstreamError(502, f"{upstream.name}: the upstream sent a chunk that is not an object")
    if "error" in chunk:
        raise UpstreamError.from_stream_error(upstream, payload)
    return Chunk(chunk, payload)


async def complete_chat(upstream: Upstream, body: dict) -> dict:
    """POST /chat/completions without streaming; the parsed response."""
    try:
        response = await http_client().post(
            upstream.url("/chat/completions"), json=body, headers=upstream.headers, timeout=_timeout(upstream)
        )
    except httpx.HTTPError as exc:
        raise _translate(exc, upstream) from exc
    if response.status_code >= 400:
        raise UpstreamError.from_response(upstream, response.status_code, response.content, response.headers)
    try:
        return response.json()
    except ValueError as exc:
        raise UpstreamError(502, f"{upstream.name}: the upstream answered with something that is not JSON") from exc


async def list_models(upstream: Upstream) -> list[dict]:
    """GET /models: the upstream's model list (OpenAI's `data` array)."""
    try:
        response = await http_client().get(upstream.url("/models"), headers=upstream.headers, timeout=_timeout(upstream))
    except httpx.HTTPError as exc:
        raise _translate(exc, upstream) from exc
    if response.status_code >= 400:
        raise UpstreamError.from_response(upstream, response.status_code, response.content, response.headers)
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError(502, f"{upstream.name}: /models did not answer with a model list") from exc
    return [m for m in data if isinstance(m, dict) and m.get("id")]
