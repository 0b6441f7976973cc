"""The ASGI handler for /v1: Django without the browser's middleware and per-request threads.

The API authenticates by key (conversations.api.auth), so sessions, CSRF, the auth middleware and
messages have nothing to do there, and each of Django's MiddlewareMixin middlewares costs two hops
to a thread per request under ASGI. Django's handler also opens a ThreadSensitiveContext per
request, which starts (and joins) a new thread for the request's few sync calls (the
request_started/finished receivers, response.close); here they share asgiref's one sync thread,
as the gateway's own rare database calls do. Measured with scripts/bench_gateway.py: see README.

asgi.py sends /v1/ here; the site's own handler serves the rest (and can serve /v1 too, only
slower: Django's test client does).
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response


class APIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)
