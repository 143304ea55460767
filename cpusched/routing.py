"""WebSocket routes: live measurements and alerts."""

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from monitoring.consumers import AlertsConsumer, MonitoringConsumer

websocket_urlpatterns = [
    path("ws/monitoring", MonitoringConsumer.as_asgi()),
    path("ws/alerts", AlertsConsumer.as_asgi()),
    # Any other path is refused at the handshake rather than raising.
    re_path(r"", WebsocketDenier.as_asgi()),
]
