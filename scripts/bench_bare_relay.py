"""The baseline for scripts/bench_gateway.py: a bare Django async view relaying a stream.

No database, no middleware, no authentication, no metering: the least a Django view can do to
relay an upstream's stream with the same HTTP client Chatsite uses. Run: python scripts/bench_bare_relay.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import sys

import django
from django.conf import settings

PORT, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
settings.configure(DEBUG=False, SECRET_KEY="bench", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], MIDDLEWARE=[],
                   INSTALLED_APPS=[], DATABASES={})
django.setup()

import httpx2 as httpx  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

client: httpx.AsyncClient | None = None


@csrf_exempt
async def relay(request):
    global client
    if client is None:
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200))
    body = request.body

    async def events():
        async with client.stream("POST", f"http://127.0.0.1:{UPSTREAM}/v1/chat/completions", content=body,
                                 headers={"content-type": "application/json"}) as response:
            async for data in response.aiter_bytes():
                yield data

    return StreamingHttpResponse(events(), content_type="text/event-stream")


urlpatterns = [path("v1/chat/completions", relay)]

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(get_asgi_application(), host="127.0.0.1", port=PORT, log_level="warning", loop="uvloop",
                http="httptools", lifespan="off")
