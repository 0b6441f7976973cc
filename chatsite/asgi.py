"""The ASGI entry point: HTTP to Django, the chat websocket to Channels, lifespan for start-up and
shutdown (conversations/lifecycle.py). Importing it starts nothing.

Production: uvicorn chatsite.asgi:application (see README); development: manage.py runserver.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite.origins import SameOriginValidator  # noqa: E402
from conversations import lifecycle  # noqa: E402
from conversations.api.handler import APIHandler  # noqa: E402
from conversations.observability.logs import observe_http  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

api_asgi_app = APIHandler()
websocket_app = SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


async def http(scope, receive, send):
    """/v1/ (key-authenticated, hot) to the middleware-free handler; the pages to the full one."""
    lifecycle.start()  # done by the lifespan under Uvicorn; Daphne's runserver has none (`make run`)
    app = api_asgi_app if scope["path"].startswith("/v1/") else django_asgi_app
    await observe_http(app, scope, receive, send)  # metrics and the request's log line


async def websocket(scope, receive, send):
    lifecycle.start()
    await websocket_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        # Origin: the site's own, scheme, host and port (no cross-site websocket hijacking); then
        # the session. The consumer checks the login and the conversation's owner.
        "websocket": websocket,
        "lifespan": lifecycle.lifespan,
    }
)
