"""The ASGI handler for /v1: Django, without what a key-authenticated JSON API does not use.

Each of these cost a hop to asgiref's one sync thread per request, and a burst of requests queues
on that thread (behind the usage writer's batch insert, too): scripts/bench_gateway.py's 100
simultaneous streams waited hundreds of milliseconds for their first token.
- The browser's middleware (sessions, CSRF, auth, messages): the API authenticates by key
  (conversations.api.auth); each MiddlewareMixin middleware is two hops a request under ASGI.
- The per-request ThreadSensitiveContext, which starts and joins a thread for the request's sync
  calls.
- The request_started / request_finished signals and response.close(): their receivers reset the
  debug query log and recycle database connections. The API's requests make no queries of their
  own when the caches are warm (keys, models and templates are cached; usage is written in
  batches). A connection that died (a database restart, a killed backend) is replaced where the
  connections are handed out: PostgreSQL's come from a pool that checks each one it hands out
  (chatsite/settings.py), and the API's queries run in hops that first have the database thread
  give its connection back (conversations.connections.aquery). (An earlier version marked every
  thread's connection for a health check from here, the event loop's thread: a connection being
  opened in the database thread at that moment ran its check before autocommit was on, and was
  left inside a transaction. A later one made that check a hop of every request, queries or not:
  in a burst, each request waited there tens of milliseconds for the others.)

The body is not read before the view asks for it: after the key is checked (a request with no
valid key is refused without its body being read), no further than API_MAX_BODY_BYTES (refused by
Content-Length at once, a chunked body once it passes the limit), and a response that leaves a
body unread closes the connection.

Whatever goes wrong, even outside any view (no route for the path), the answer is OpenAI-shaped
JSON with a request id, never Django's HTML pages.

asgi.py sends /v1/ here; the site's own handler serves everything else (and can serve /v1 too:
Django's test client does).
"""

from __future__ import annotations

import asyncio
import io

from django.core.exceptions import RequestAborted, RequestDataTooBig
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

from conversations.api.auth import error_response, unexpected_error_response
from conversations.gateway.errors import GatewayError
from conversations.gateway.pipeline import new_request_id


class _Processed(Exception):
    pass


class StreamedBody:
    """A request's body, read from the ASGI connection only when the view asks for it."""

    def __init__(self, receive, scope):
        self._receive = receive
        self.finished = asyncio.Event()
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length", b"").strip()
        # A length of 19 digits or more is past any limit (and int() of thousands of digits raises).
        self.length = (int(length) if len(length) < 19 else 2**63) if length.isdigit() else None
        self.expected = bool(self.length) or b"transfer-encoding" in headers

    async def read(self, limit: int) -> bytes:
        """The whole body; RequestDataTooBig as soon as it is known to pass `limit`."""
        if self.length is not None and self.length > limit:
            raise RequestDataTooBig
        chunks, size = [], 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestDataTooBig
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        self.finished.set()
        return b"".join(chunks)

    @property
    def unread(self) -> bool:
        return self.expected and not self.finished.is_set()

    async def listen_for_disconnect(self) -> None:
        """As Django does, a client that goes away cancels the view (and its upstream call); heard
        once the body is read (read() hears it before)."""
        await self.finished.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass
        raise RequestAborted


class APIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = self._respond

    async def _respond(self, request):
        try:
            return await self._get_response_async(request)
        except RequestAborted:
            raise
        except Exception as exc:  # no route (Resolver404), or a failure outside api_endpoint
            return unexpected_error_response(request, exc)

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django's ASGIHandler.handle less the signals and the close() hop, with the body read
        by the view (see above)."""
        set_script_prefix(get_script_prefix(scope))
        body = StreamedBody(receive, scope)
        request, _ = self.create_request(scope, io.BytesIO())
        if request is None:  # a query string that is not UTF-8
            error = GatewayError(400, "The request's query string is not UTF-8 text.", code="invalid_request")
            await self.send_response(error_response(error, new_request_id()), send)
            return
        request.body_reader = body
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(body.listen_for_disconnect())
                response = await self.run_get_response(request)
                if body.unread:
                    response["Connection"] = "close"  # the server would otherwise read it to its end
                await self.send_response(response, send)
                raise _Processed
        except* (_Processed, RequestAborted):
            pass

