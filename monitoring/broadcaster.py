"""One loop per web process that pushes the live state to every socket.

The scheduler is another process, so an in-memory channel layer cannot carry
its updates here. Instead the :class:`Broadcaster` reads the live-state row
(and the alerts changed since its last look) once per
``server.ws_push_interval``, serializes each message once, and hands it to
the :class:`Mailbox` of every connected client of a group. The database is
read once per tick whatever the number of clients; nothing is read while no
client is connected (the loop stops and restarts with the first client).

Each client drains its own mailbox in its own task, so a slow client delays
only itself. A mailbox holds a few messages at most: when it is full the
oldest is dropped and counted (per group, exposed in ``/metrics``), so a
client that stalls and resumes gets the newest state, and memory stays flat
however long it stalls.

Messages (``/ws/monitoring``; the design's shape, with more fields in data)::

    {"type": "monitoring_update", "data": {"timestamp": ..., "cpu_usage": ...,
     "current_limit": ..., "quota_status": "normal", ...}}

and on ``/ws/alerts``, for a new alert or one whose severity rose::

    {"type": "alert", "level": "warning", "message": ..., "timestamp": ...,
     "id": 7, "key": "quota.avg", "alert_type": "quota", "count": 1}

plus ``{"type": "alert_resolved", "id": 7, ...}`` when one is resolved and
``{"type": "alerts_status", "open": 2, "by_severity": {...}}`` on connect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q
from django.utils import timezone

from alerts.models import Alert
from cpusched import runtime
from monitoring import live

logger = logging.getLogger(__name__)

MONITORING = "monitoring"
ALERTS = "alerts"
GROUPS = (MONITORING, ALERTS)

# Messages a client may have waiting. A monitoring update supersedes the one
# before, so a few suffice; alerts are rarer and each one matters more.
MAILBOX_SIZE = {MONITORING: 4, ALERTS: 50}

# Alert changes pushed per tick at most (a storm is summarized by the rest).
MAX_ALERTS_PER_TICK = 50

# A failing tick is logged at most this often (the loop keeps going).
ERROR_LOG_EVERY_S = 60.0


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))


class Mailbox:
    """A bounded queue of serialized messages for one client."""

    def __init__(self, group: str, size: int | None = None):
        self.group = group
        self.size = size or MAILBOX_SIZE[group]
        self.dropped = 0
        self._items: deque[str] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: str) -> bool:
        """Queue a message; when full, drop the oldest. False if one was dropped."""
        kept = True
        if len(self._items) >= self.size:
            self._items.popleft()
            self.dropped += 1
            broadcaster.stats.dropped[self.group] += 1
            kept = False
        self._items.append(message)
        self._ready.set()
        return kept

    async def get(self) -> str:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


@dataclass
class Stats:
    """Counters since the process started (exposed in /metrics)."""

    sent: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    ticks: int = 0
    tick_errors: int = 0
    last_tick_s: float = 0.0


@dataclass
class Tick:
    """What one read of the database found."""

    params: Any
    row: Any
    open_by_severity: dict[str, int]
    alerts: list[Alert]


class Broadcaster:
    def __init__(self) -> None:
        self.clients: dict[str, set[Mailbox]] = {group: set() for group in GROUPS}
        self.stats = Stats()
        self.interval = 1.0  # seconds, server.ws_push_interval as last read
        # The newest monitoring update and alerts summary, for greetings.
        self.latest: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        self._alert_cursor: datetime | None = None
        self._severities: dict[int, str] = {}
        self._last_error_log = 0.0

    def connections(self) -> int:
        return sum(len(clients) for clients in self.clients.values())

    def subscribe(self, mailbox: Mailbox) -> None:
        """Add a client; start the loop on the running event loop if needed."""
        self.clients[mailbox.group].add(mailbox)
        if not self.running():
            # What was pushed before a pause is no greeting, and what changed
            # during it is no news (the first greeting reads the alerts).
            self.latest.clear()
            self._alert_cursor = timezone.now()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self, mailbox: Mailbox) -> None:
        self.clients[mailbox.group].discard(mailbox)

    def running(self) -> bool:
        """Whether the loop runs on the current event loop."""
        task = self._task
        if task is None or task.done():
            return False
        return task.get_loop() is asyncio.get_running_loop()

    async def stop(self) -> None:
        """Cancel the loop (for tests and shutdown); clients stay registered."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        # The first push waits one interval: a new client was just greeted
        # with a fresh read.
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            interval = await self._interval()
            next_at += interval
            now = loop.time()
            if next_at < now:  # a slow tick: skip ahead instead of bursting
                next_at = now + interval
            await asyncio.sleep(next_at - now)
            if not self.connections():
                break
            await self.push_once()
        self._task = None

    async def _interval(self) -> float:
        """``server.ws_push_interval``, read now (a pause may have changed it)."""
        params = runtime.cached()
        if params is None:
            try:
                params = await database_sync_to_async(runtime.params)()
            except Exception:  # keep the last interval; push_once will log
                return self.interval
        self.interval = params["server.ws_push_interval"]
        return self.interval

    async def push_once(self) -> None:
        """Read the database once and push to every connected client."""
        started = time.monotonic()
        try:
            tick = await database_sync_to_async(self._read)(bool(self.clients[ALERTS]))
        except Exception as exc:  # the loop must survive a locked or lost DB
            self._log_failure(exc)
            return
        self.interval = tick.params["server.ws_push_interval"]
        self._push(MONITORING, self.monitoring_message(tick))
        self.latest[ALERTS] = self.status_message(tick)
        for message in self._alert_messages(tick):
            self._push(ALERTS, message)
        self.stats.ticks += 1
        self.stats.last_tick_s = time.monotonic() - started

    def _read(self, want_alerts: bool, seed: bool = False) -> Tick:
        params = runtime.params()
        row = live.read()
        open_alerts = Alert.objects.filter(resolved=False)
        if seed:
            # Watching starts now: alerts already open are known (a repeat of
            # one is not news) and older changes are not replayed.
            self._alert_cursor = timezone.now()
            self._severities = dict(open_alerts.values_list("id", "severity"))
        by_severity = dict(
            open_alerts.values_list("severity").annotate(n=Count("id")).order_by()
        )
        changed: list[Alert] = []
        if want_alerts and self._alert_cursor is not None:
            since = self._alert_cursor
            changed = list(
                Alert.objects.filter(
                    Q(last_seen__gt=since) | Q(resolved_at__gt=since)
                ).order_by("last_seen")[:MAX_ALERTS_PER_TICK]
            )
        return Tick(params, row, by_severity, changed)

    def monitoring_message(self, tick: Tick) -> str:
        data = live.current(tick.row, tick.params)
        data["alerts_open"] = sum(tick.open_by_severity.values())
        return encode({"type": "monitoring_update", "data": data})

    def status_message(self, tick: Tick) -> str:
        return encode(
            {
                "type": "alerts_status",
                "open": sum(tick.open_by_severity.values()),
                "by_severity": tick.open_by_severity,
            }
        )

    def _alert_messages(self, tick: Tick) -> list[str]:
        messages = []
        for alert in tick.alerts:
            self._advance_cursor(alert)
            message = self._alert_change(alert)
            if message is not None:
                messages.append(encode(message))
        return messages

    def _advance_cursor(self, alert: Alert) -> None:
        for moment in (alert.last_seen, alert.resolved_at):
            if moment is not None and (
                self._alert_cursor is None or moment > self._alert_cursor
            ):
                self._alert_cursor = moment

    def _alert_change(self, alert: Alert) -> dict[str, Any] | None:
        """A message for a new, escalated or resolved alert; None for a repeat."""
        body = {
            "id": alert.id,
            "key": alert.key,
            "alert_type": alert.alert_type,
            "level": alert.severity,
            "message": alert.message,
            "timestamp": alert.last_seen,
            "count": alert.count,
        }
        if alert.resolved:
            self._severities.pop(alert.id, None)
            return {"type": "alert_resolved", **body}
        if self._severities.get(alert.id) == alert.severity:
            return None
        self._severities[alert.id] = alert.severity
        if len(self._severities) > 10000:  # only open alerts belong here
            self._severities.pop(next(iter(self._severities)))
        return {"type": "alert", **body}

    def _push(self, group: str, message: str) -> None:
        if group == MONITORING:
            self.latest[group] = message
        for mailbox in list(self.clients[group]):
            mailbox.put(message)

    def _log_failure(self, exc: Exception) -> None:
        self.stats.tick_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:
            self._last_error_log = now
            logger.warning(
                "Live push skipped a tick: cannot read the live state (%s); "
                "retrying every tick",
                exc,
            )

    async def greeting(self, group: str, first: bool = False) -> str:
        """The current state for a client that just connected or asked.

        While the loop runs its last message is at most one interval old.
        The first client after a pause (``first``) gets a fresh read, which
        also marks where watching alerts begins.
        """
        if not first and self.running() and group in self.latest:
            return self.latest[group]
        tick = await database_sync_to_async(self._read)(False, first)
        self.interval = tick.params["server.ws_push_interval"]
        if group == ALERTS:
            return self.status_message(tick)
        return self.monitoring_message(tick)


# The one broadcaster of this process.
broadcaster = Broadcaster()
