"""ASGI entry point: HTTP through Django, WebSockets through Channels.

A socket passes, in order: the origin check (refused and logged unless the
origin is allowed), the session cookie (Channels' auth stack), an optional
API key that replaces the session user, then the route's consumer, which
refuses unauthenticated users when authentication is on.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpusched.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: these modules load models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from cpusched.auth import ApiKeyScope, OriginGuard  # noqa: E402
from cpusched.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginGuard(
            AuthMiddlewareStack(ApiKeyScope(URLRouter(websocket_urlpatterns)))
        ),
    }
)
