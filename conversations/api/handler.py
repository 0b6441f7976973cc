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
  own in the request (keys, models and templates are cached; usage is written in batches), and
  the usage writer recycles its thread's connection before each batch.

asgi.py sends /v1/ here; the site's own handler serves everything else (and can serve /v1 too:
Django's test client does).
"""

from __future__ import annotations

import asyncio
from contextlib import closing

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix


class _Processed(Exception):
    pass


class APIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django's ASGIHandler.handle less the signals and the close() hop (see above)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            try:
                # As Django does: a client that goes away cancels the view and its stream.
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.listen_for_disconnect(receive))
                    response = await self.run_get_response(request)
                    await self.send_response(response, send)
                    raise _Processed
            except* (_Processed, RequestAborted):
                pass
