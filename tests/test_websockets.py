"""WebSockets through the real ASGI application, consumers and broadcaster."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from alerts.service import raise_alert, resolve_alert
from cpusched import config, runtime
from cpusched.apikeys import create_key
from cpusched.asgi import application
from monitoring import broadcaster as broadcasting
from monitoring.broadcaster import MAILBOX_SIZE, broadcaster
from monitoring.models import LiveState

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://localhost:8080"


@pytest.fixture(autouse=True)
async def fresh_broadcaster():
    runtime.forget()
    await broadcaster.stop()
    broadcaster.stats = broadcasting.Stats()
    broadcaster.latest.clear()
    for clients in broadcaster.clients.values():
        clients.clear()
    yield
    await broadcaster.stop()
    for clients in broadcaster.clients.values():
        clients.clear()
    runtime.forget()


@database_sync_to_async
def set_params(**values: object) -> None:
    config.apply({key.replace("__", "."): v for key, v in values.items()})
    runtime.forget()


@database_sync_to_async
def write_live(cpu: float, cap: float = 80.0) -> None:
    LiveState.objects.update_or_create(
        id=1,
        defaults={
            "updated_at": timezone.now(),
            "data": {"cpu_usage": cpu, "cap": cap, "avg_mean": 10.0},
        },
    )


@database_sync_to_async
def session_cookie(username: str = "admin") -> bytes:
    user = User.objects.create_superuser(username, f"{username}@example.com", "pw-1")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@database_sync_to_async
def api_key() -> str:
    user = User.objects.create_user("script", password="pw-script-1")
    return create_key(user, "script")[1]


def communicator(
    path: str = "/ws/monitoring",
    cookie: bytes | None = None,
    origin: bytes | None = ORIGIN,
    app=application,
    **headers: bytes,
) -> WebsocketCommunicator:
    pairs = [(name.replace("_", "-").encode(), v) for name, v in headers.items()]
    if cookie is not None:
        pairs.append((b"cookie", cookie))
    if origin is not None:
        pairs.append((b"origin", origin))
    return WebsocketCommunicator(app, path, headers=pairs)


async def receive(socket: WebsocketCommunicator, timeout: float = 5) -> dict:
    return json.loads(await socket.receive_from(timeout=timeout))


async def quiet_loop() -> None:
    """Let the loop push once, then wait a minute: tests push by hand."""
    await set_params(server__ws_push_interval=60)


# -- who may connect --------------------------------------------------------------


async def test_a_logged_in_client_gets_the_current_state_at_once():
    await write_live(cpu=25.5, cap=85.0)
    socket = communicator(cookie=await session_cookie())

    connected, _ = await socket.connect()
    message = await receive(socket)

    assert connected is True
    assert message["type"] == "monitoring_update"
    assert message["data"]["cpu_usage"] == 25.5
    assert message["data"]["current_limit"] == 85.0
    assert message["data"]["quota_status"] == "normal"
    assert message["data"]["scheduler_running"] is True
    await socket.disconnect()


async def test_every_client_receives_every_push():
    await set_params(server__ws_push_interval=0.2)
    await write_live(cpu=10.0)
    cookie = await session_cookie()
    sockets = [communicator(cookie=cookie) for _ in range(5)]
    for socket in sockets:
        await socket.connect()

    await asyncio.sleep(0.1)
    await write_live(cpu=77.0)
    seen = []
    for socket in sockets:
        values = []
        while 77.0 not in values:
            values.append((await receive(socket))["data"]["cpu_usage"])
        seen.append(values[-1])

    assert seen == [77.0] * 5
    for socket in sockets:
        await socket.disconnect()


async def test_an_evil_origin_is_refused_and_logged_with_its_reason(caplog):
    socket = communicator(cookie=await session_cookie(), origin=b"https://evil.example")

    with caplog.at_level(logging.WARNING, logger="cpusched.auth"):
        connected, _ = await socket.connect()

    assert connected is False
    assert "Refused WebSocket /ws/monitoring" in caplog.text
    assert "'https://evil.example' is not allowed" in caplog.text
    assert broadcaster.stats.refused["origin"] == 1


async def test_a_socket_without_origin_is_refused_unless_allowed(caplog):
    cookie = await session_cookie()

    refused, _ = await communicator(cookie=cookie, origin=None).connect()
    await set_params(server__allowed_origins="none")
    allowed = communicator(cookie=cookie, origin=None)
    accepted, _ = await allowed.connect()

    assert refused is False
    assert "no Origin header" in caplog.text
    assert accepted is True
    await allowed.disconnect()


async def test_an_origin_listed_in_allowed_origins_is_accepted():
    await set_params(server__allowed_origins="https://ops.example.com")
    socket = communicator(
        cookie=await session_cookie(), origin=b"https://ops.example.com"
    )

    connected, _ = await socket.connect()

    assert connected is True
    await socket.disconnect()


async def test_an_unauthenticated_socket_is_closed_and_logged(caplog):
    socket = communicator()

    with caplog.at_level(logging.WARNING, logger="monitoring.consumers"):
        connected, code = await socket.connect()

    assert connected is False
    assert code == 4003
    assert "unauthenticated" in caplog.text


async def test_a_socket_with_an_api_key_is_accepted():
    socket = communicator(x_api_key=(await api_key()).encode())

    connected, _ = await socket.connect()

    assert connected is True
    await socket.disconnect()


async def test_a_socket_with_a_bad_api_key_is_refused(caplog):
    socket = communicator(x_api_key=b"cps_00000000_forged")

    connected, _ = await socket.connect()

    assert connected is False
    assert "invalid or inactive API key" in caplog.text


async def test_anonymous_sockets_are_accepted_when_authentication_is_off():
    await set_params(server__auth_enabled=False)
    socket = communicator()

    connected, _ = await socket.connect()

    assert connected is True
    await socket.disconnect()


async def test_the_socket_over_ws_max_connections_is_refused(caplog):
    await set_params(server__ws_max_connections=2)
    cookie = await session_cookie()
    first, second, third = (communicator(cookie=cookie) for _ in range(3))

    results = [(await s.connect())[0] for s in (first, second, third)]

    assert results == [True, True, False]
    assert "full: 2 sockets open" in caplog.text
    await first.disconnect()
    await second.disconnect()


async def test_an_unknown_socket_path_is_refused():
    socket = communicator("/ws/other", cookie=await session_cookie())

    connected, _ = await socket.connect()

    assert connected is False


# -- slow clients -----------------------------------------------------------------


class Stallable:
    """An ASGI wrapper whose sends wait while stalled, like a full TCP buffer."""

    def __init__(self, app):
        self.app = app
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def __call__(self, scope, receive, send):
        async def gated(message):
            if message["type"] == "websocket.send":
                await self.flowing.wait()
            await send(message)

        return await self.app(scope, receive, gated)


async def test_a_stalled_client_resumes_with_the_current_state_and_drops_count():
    await quiet_loop()
    await write_live(cpu=1.0)
    app = Stallable(application)
    socket = communicator(cookie=await session_cookie(), app=app)
    await socket.connect()
    await receive(socket)
    (mailbox,) = broadcaster.clients["monitoring"]

    app.flowing.clear()
    longest = 0
    for cpu in range(2, 52):
        await write_live(cpu=float(cpu))
        await broadcaster.push_once()
        longest = max(longest, len(mailbox))
    app.flowing.set()
    values = []
    while 51.0 not in values:
        values.append((await receive(socket))["data"]["cpu_usage"])

    assert longest <= MAILBOX_SIZE["monitoring"]
    assert len(values) <= MAILBOX_SIZE["monitoring"] + 1
    assert values[-1] == 51.0
    assert mailbox.dropped >= 50 - MAILBOX_SIZE["monitoring"] - 1
    assert broadcaster.stats.dropped["monitoring"] == mailbox.dropped
    await socket.disconnect()


async def test_the_database_is_read_once_per_tick_whatever_the_clients(monkeypatch):
    await quiet_loop()
    await write_live(cpu=5.0)
    cookie = await session_cookie()
    sockets = [communicator(cookie=cookie) for _ in range(10)]
    for socket in sockets:
        await socket.connect()
    reads = []
    original = broadcasting.live.read
    monkeypatch.setattr(
        broadcasting.live, "read", lambda: reads.append(1) or original()
    )

    await broadcaster.push_once()
    await broadcaster.push_once()

    assert len(reads) == 2
    for socket in sockets:
        await socket.disconnect()


async def test_the_loop_stops_when_the_last_client_leaves():
    await set_params(server__ws_push_interval=0.2)
    socket = communicator(cookie=await session_cookie())
    await socket.connect()
    running = broadcaster.running()

    await socket.disconnect()
    for _ in range(30):  # the loop notices at its next tick
        if not broadcaster.running():
            break
        await asyncio.sleep(0.1)

    assert running is True
    assert broadcaster.running() is False


# -- client messages --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, field, words",
    [
        ("{not json", None, "not valid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        ('{"type": "reboot"}', "type", "'reboot' is not a command"),
        ('{"kind": "ping"}', "type", "None is not a command"),
        ('{"type": ["ping"]}', "type", "is not a command"),
        ("x" * 5000, None, "1024 at most"),
    ],
)
async def test_a_malformed_message_gets_an_error_and_the_socket_stays_open(
    text, field, words
):
    await quiet_loop()
    socket = communicator(cookie=await session_cookie())
    await socket.connect()
    await receive(socket)

    await socket.send_to(text_data=text)
    error = await receive(socket)
    await socket.send_to(text_data='{"type": "ping"}')
    pong = await receive(socket)

    assert error["type"] == "error"
    assert error["field"] == field
    assert words in error["message"]
    assert pong == {"type": "pong"}
    await socket.disconnect()


async def test_a_binary_message_gets_an_error():
    await quiet_loop()
    socket = communicator(cookie=await session_cookie())
    await socket.connect()
    await receive(socket)

    await socket.send_to(bytes_data=b"\x00\x01")

    assert "binary messages" in (await receive(socket))["message"]
    await socket.disconnect()


async def test_refresh_sends_the_current_state():
    await quiet_loop()
    socket = communicator(cookie=await session_cookie())
    await socket.connect()
    await receive(socket)
    await write_live(cpu=64.0)
    await broadcaster.push_once()
    await receive(socket)

    await socket.send_to(text_data='{"type": "refresh"}')

    assert (await receive(socket))["data"]["cpu_usage"] == 64.0
    await socket.disconnect()


async def test_a_client_flooding_messages_is_disconnected():
    await quiet_loop()
    socket = communicator(cookie=await session_cookie())
    await socket.connect()

    for _ in range(61):
        await socket.send_to(text_data='{"type": "ping"}')
    output = await socket.receive_output(timeout=5)
    while output["type"] != "websocket.close":
        output = await socket.receive_output(timeout=5)

    assert output["code"] == 4008


async def test_an_event_sent_to_the_group_reaches_the_socket():
    await quiet_loop()
    socket = communicator("/ws/alerts", cookie=await session_cookie())
    await socket.connect()
    await receive(socket)

    text = json.dumps({"type": "alert", "level": "info", "message": "Hello"})
    await get_channel_layer().group_send(
        "alerts", {"type": "live.message", "text": text}
    )

    assert (await receive(socket))["message"] == "Hello"
    await socket.disconnect()


# -- alerts -----------------------------------------------------------------------


async def test_the_alert_socket_tells_of_new_escalated_and_resolved_alerts():
    await quiet_loop()
    socket = communicator("/ws/alerts", cookie=await session_cookie())
    await socket.connect()
    status = await receive(socket)

    await database_sync_to_async(raise_alert)(
        "quota.avg", "quota", "warning", "Average budget at 4 %"
    )
    await broadcaster.push_once()
    new = await receive(socket)
    await database_sync_to_async(raise_alert)(
        "quota.avg", "quota", "warning", "Average budget at 4 %"
    )
    await broadcaster.push_once()
    repeat_is_quiet = await socket.receive_nothing(timeout=0.2)
    await database_sync_to_async(raise_alert)(
        "quota.avg", "quota", "critical", "Average budget at 1 %"
    )
    await broadcaster.push_once()
    escalated = await receive(socket)
    await database_sync_to_async(resolve_alert)("quota.avg")
    await broadcaster.push_once()
    resolved = await receive(socket)

    assert status == {"type": "alerts_status", "open": 0, "by_severity": {}}
    assert (new["type"], new["level"]) == ("alert", "warning")
    assert new["message"] == "Average budget at 4 %"
    assert repeat_is_quiet is True
    assert (escalated["type"], escalated["level"]) == ("alert", "critical")
    assert resolved["type"] == "alert_resolved"
    await socket.disconnect()


async def test_alerts_open_before_a_client_connects_are_not_replayed_as_news():
    await quiet_loop()
    await database_sync_to_async(raise_alert)(
        "cpu.high", "system", "warning", "CPU above 90 % for 5 minutes"
    )
    socket = communicator("/ws/alerts", cookie=await session_cookie())
    await socket.connect()
    status = await receive(socket)

    await database_sync_to_async(raise_alert)(
        "cpu.high", "system", "warning", "CPU above 90 % for 5 minutes"
    )
    await broadcaster.push_once()

    assert status["open"] == 1
    assert status["by_severity"] == {"warning": 1}
    assert await socket.receive_nothing(timeout=0.2) is True
    await socket.disconnect()


async def test_the_monitoring_update_counts_open_alerts():
    await quiet_loop()
    await database_sync_to_async(raise_alert)("disk.low", "system", "critical", "Disk")
    socket = communicator(cookie=await session_cookie())
    await socket.connect()

    assert (await receive(socket))["data"]["alerts_open"] == 1
    await socket.disconnect()


async def test_a_heartbeat_older_than_a_few_seconds_says_the_scheduler_stopped():
    await quiet_loop()
    await database_sync_to_async(LiveState.objects.update_or_create)(
        id=1, defaults={"updated_at": timezone.now() - timedelta(minutes=2)}
    )
    socket = communicator(cookie=await session_cookie())
    await socket.connect()

    data = (await receive(socket))["data"]

    assert data["scheduler_running"] is False
    assert data["heartbeat_age"] >= 120
    await socket.disconnect()
