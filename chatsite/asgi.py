"""The ASGI entry point: HTTP to Django, the chat websocket to Channels, lifespan for shutdown.

Production: uvicorn chatsite.asgi:application (see README); development: manage.py runserver.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from conversations import local  # noqa: E402
from conversations.lifecycle import lifespan  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

# The embedded model's server, started with the site when it is installed (see conversations/local).
local.start()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin checked against ALLOWED_HOSTS (no cross-site websocket hijacking), then the session.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)
