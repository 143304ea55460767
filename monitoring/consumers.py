"""WebSocket consumers for ``/ws/monitoring`` and ``/ws/alerts``.

The origin is checked before a consumer runs (:class:`cpusched.auth.OriginGuard`).
A consumer then refuses the socket, logging why, when sockets are switched
off (``server.ws_enabled``), when authentication is on and the scope has no
logged-in user or valid API key, or when this process already serves
``server.ws_max_connections`` sockets. Accepted sockets get the current state
at once, then whatever :mod:`monitoring.broadcaster` pushes.

Clients may send ``{"type": "ping"}`` (answered with ``pong``) and
``{"type": "refresh"}`` (answered with the current state). Anything else gets
``{"type": "error", "field": ..., "message": ...}``; a client that sends more
than :data:`MAX_MESSAGES_PER_MINUTE` messages is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from cpusched import runtime
from monitoring.broadcaster import (
    ALERTS,
    MONITORING,
    Mailbox,
    broadcaster,
    encode,
)

logger = logging.getLogger(__name__)

# Client messages are tiny commands; anything bigger is refused unread.
MAX_MESSAGE_CHARS = 1024

MAX_MESSAGES_PER_MINUTE = 60

COMMANDS = ("ping", "refresh")

# Close codes in the private range (4000-4999) say why a socket was closed.
CLOSE_TOO_CHATTY = 4008


class LiveConsumer(AsyncWebsocketConsumer):
    """A socket fed by the broadcaster; subclasses name their group."""

    group = MONITORING

    async def connect(self) -> None:
        self.mailbox: Mailbox | None = None
        self.sender: asyncio.Task | None = None
        self.received: list[float] = []

        params = runtime.cached() or await database_sync_to_async(runtime.params)()
        reason = self.refusal(params)
        if reason is not None:
            broadcaster.stats.refused[reason.split(":")[0]] += 1
            logger.warning(
                "Refused WebSocket %s from %s: %s", self.path, self.client, reason
            )
            await self.close(code=4003)
            return
        await self.open()

    async def open(self) -> None:
        # Subscribing first holds the slot (many sockets may be connecting at
        # once); the greeting is queued before the socket counts as open, so
        # a client told "connected" has its first message waiting.
        self.mailbox = Mailbox(self.group)
        first = not broadcaster.running()
        broadcaster.subscribe(self.mailbox)
        try:
            await self.greet(first)
        except DatabaseError as exc:
            broadcaster.unsubscribe(self.mailbox)
            self.mailbox = None
            logger.error(
                "Refused WebSocket %s: cannot read the live state: %s", self.path, exc
            )
            await self.close(code=1011)
            return
        await self.join_group()
        await self.accept()
        self.sender = asyncio.get_running_loop().create_task(self.drain())
        logger.debug("WebSocket %s opened for %s", self.path, self.user_name)

    def refusal(self, params: Any) -> str | None:
        """Why this socket may not open, or None."""
        if not params["server.ws_enabled"]:
            return "disabled: server.ws_enabled is off"
        if params["server.auth_enabled"] and not self.authenticated:
            return "unauthenticated: no logged-in session or valid API key"
        limit = params["server.ws_max_connections"]
        if broadcaster.connections() >= limit:
            return f"full: {limit} sockets open (server.ws_max_connections)"
        return None

    async def greet(self, first: bool = False) -> None:
        """Queue the current state so a new client need not wait a tick."""
        assert self.mailbox is not None
        self.mailbox.put(await broadcaster.greeting(self.group, first))

    async def join_group(self) -> None:
        """Join the channel layer's group, for events sent by other processes.

        Live data never travels this way (the broadcaster reads it); a shared
        layer (Redis) lets any process push an event to every socket at once.
        """
        if self.channel_layer is not None:
            await self.channel_layer.group_add(self.group, self.channel_name)

    async def live_message(self, event: dict[str, Any]) -> None:
        """Queue an event sent to the group, like a broadcaster push.

        Sent as ``group_send(group, {"type": "live.message", "text": json})``.
        """
        if self.mailbox is not None and isinstance(event.get("text"), str):
            self.mailbox.put(event["text"])

    async def drain(self) -> None:
        assert self.mailbox is not None
        while True:
            message = await self.mailbox.get()
            await self.send(text_data=message)
            broadcaster.stats.sent[self.group] += 1

    async def disconnect(self, code: int) -> None:
        if self.mailbox is None:
            return
        broadcaster.unsubscribe(self.mailbox)
        if self.channel_layer is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.sender is not None:
            self.sender.cancel()
        if self.mailbox.dropped:
            logger.info(
                "WebSocket %s for %s closed after %d messages were dropped "
                "(the client read too slowly)",
                self.path,
                self.user_name,
                self.mailbox.dropped,
            )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if self.mailbox is None:
            return
        if self.too_chatty():
            logger.warning(
                "Closing WebSocket %s from %s: more than %d messages a minute",
                self.path,
                self.client,
                MAX_MESSAGES_PER_MINUTE,
            )
            await self.close(code=CLOSE_TOO_CHATTY)
            return

        command, problem = parse_command(text_data, bytes_data)
        if problem is not None:
            self.mailbox.put(encode({"type": "error", **problem}))
        elif command == "ping":
            self.mailbox.put(encode({"type": "pong"}))
        elif command == "refresh":
            await self.greet()

    def too_chatty(self) -> bool:
        now = time.monotonic()
        self.received = [t for t in self.received if now - t < 60] + [now]
        return len(self.received) > MAX_MESSAGES_PER_MINUTE

    @property
    def path(self) -> str:
        return self.scope.get("path", "?")

    @property
    def client(self) -> str:
        client = self.scope.get("client") or ("unknown", 0)
        return str(client[0])

    @property
    def user(self) -> Any:
        return self.scope.get("user")

    @property
    def authenticated(self) -> bool:
        return bool(self.user is not None and self.user.is_authenticated)

    @property
    def user_name(self) -> str:
        return self.user.get_username() if self.authenticated else "anonymous"


class MonitoringConsumer(LiveConsumer):
    group = MONITORING


class AlertsConsumer(LiveConsumer):
    group = ALERTS


def parse_command(
    text: str | None, data: bytes | None
) -> tuple[str | None, dict[str, Any] | None]:
    """The command a client sent, or a problem naming the field at fault."""
    if text is None:
        return None, _problem(None, "binary messages are not accepted; send JSON text")
    if len(text) > MAX_MESSAGE_CHARS:
        return None, _problem(
            None, f"message of {len(text)} characters; {MAX_MESSAGE_CHARS} at most"
        )
    try:
        message = json.loads(text)
    except ValueError as exc:
        return None, _problem(None, f"not valid JSON: {exc}")
    if not isinstance(message, dict):
        return None, _problem(None, 'expected a JSON object such as {"type": "ping"}')
    kind = message.get("type")
    if kind not in COMMANDS:
        allowed = ", ".join(COMMANDS)
        return None, _problem("type", f"{kind!r} is not a command; expected {allowed}")
    return kind, None


def _problem(field: str | None, message: str) -> dict[str, Any]:
    return {"field": field, "message": message}
