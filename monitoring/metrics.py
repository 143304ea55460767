"""``GET /metrics``: the live figures in the Prometheus text format.

Open when ``server.metrics_public`` is on (the default), else it needs a
login or an API key (``X-API-Key`` or ``Authorization: Bearer``); see
:mod:`cpusched.auth`. Values come from the scheduler's live-state row, the
open alerts, and this web process's WebSocket counters; a figure the
scheduler has not written is left out rather than reported as zero. Names
carry their unit (``_percent`` of the whole machine, ``_seconds``, ``_bytes``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from alerts.models import Alert
from cpusched import config, runtime
from monitoring import live
from monitoring.broadcaster import GROUPS, broadcaster

logger = logging.getLogger(__name__)

SEVERITIES = [name for name, _ in Alert.SEVERITIES]
QUOTA_STATES = ("normal", "warning", "critical", "exhausted")

# (metric name, key in live.current(), help)
GAUGES = [
    ("cpu_usage_percent", "cpu_usage", "Whole-machine CPU use, % of all CPUs"),
    ("memory_usage_percent", "memory_usage", "Memory use, %"),
    ("group_cpu_percent", "group_cpu", "CPU use of the managed group, %"),
    ("cap_percent", "current_limit", "The cap in force, % of the whole machine"),
    ("bound_percent", "bound", "The planner's largest safe cap, %"),
    ("avg_window_mean_percent", "window_12h_avg", "Mean CPU over the average window"),
    ("avg_limit_percent", "avg_limit", "The average rule's limit (parameter)"),
    (
        "avg_headroom_percent",
        "avg_quota",
        "Average limit minus the window's mean, percentage points",
    ),
    (
        "avg_budget_remaining_percent",
        "avg_remaining_percent",
        "Share of the average window's budget left, %",
    ),
    (
        "avg_budget_remaining_cpu_seconds",
        "avg_remaining_cpu_s",
        "Average budget left, whole-machine CPU-seconds",
    ),
    ("peak_used_seconds", "window_24h_peak", "Peak seconds used in the peak window"),
    ("peak_remaining_seconds", "peak_quota", "Peak seconds left in the peak window"),
    ("peak_budget_seconds", "peak_budget_s", "Peak seconds allowed per window"),
    (
        "run_time_at_100_seconds",
        "run_time_at_100",
        "How long 100 % may last from now (+Inf: without end)",
    ),
    ("disk_read_bytes_per_second", "disk_read", "Disk reads"),
    ("disk_write_bytes_per_second", "disk_write", "Disk writes"),
    ("network_receive_bytes_per_second", "network_in", "Network in"),
    ("network_transmit_bytes_per_second", "network_out", "Network out"),
    ("heartbeat_age_seconds", "heartbeat_age", "Seconds since the scheduler wrote"),
]


class LiveCollector:
    """Reads the database once per scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            figures = _figures()
            severities = _open_alerts()
            revision = config.current_revision()
        except DatabaseError as exc:
            logger.error("Metrics: the database does not answer: %s", exc)
            yield _gauge("database_up", "1 when the database answers", 0)
            yield from _websocket_metrics()
            return

        yield _gauge("database_up", "1 when the database answers", 1)
        yield _gauge(
            "scheduler_up",
            "1 while the scheduler's heartbeat is fresh",
            int(figures["scheduler_running"]),
        )
        for name, key, help_text in GAUGES:
            if figures.get(key) is not None:
                yield _gauge(name, help_text, figures[key])
        yield from _state_metrics(figures)
        alerts = GaugeMetricFamily(
            "cpusched_alerts_open", "Open alerts", labels=["severity"]
        )
        for severity in SEVERITIES:
            alerts.add_metric([severity], severities.get(severity, 0))
        yield alerts
        yield _gauge("config_revision", "Configuration revision", revision)
        yield from _websocket_metrics()


def _figures() -> dict[str, Any]:
    row = live.read()
    figures = live.current(row, runtime.params())
    figures["avg_quota"] = figures["quota_remaining"]["avg_quota"]
    figures["peak_quota"] = figures["quota_remaining"]["peak_quota"]
    figures["disk_read"] = figures["disk_io"]["read"]
    figures["disk_write"] = figures["disk_io"]["write"]
    figures["network_in"] = figures["network"]["in"]
    figures["network_out"] = figures["network"]["out"]
    if row is not None and figures["run_time_at_100"] is None:
        if "run_time_at_100" in (row.data or {}):
            figures["run_time_at_100"] = float("inf")
    return figures


def _open_alerts() -> dict[str, int]:
    rows = Alert.objects.filter(resolved=False).values_list("severity")
    counts: dict[str, int] = {}
    for (severity,) in rows:
        counts[severity] = counts.get(severity, 0) + 1
    return counts


def _state_metrics(figures: dict[str, Any]) -> Iterator[Metric]:
    status = GaugeMetricFamily(
        "cpusched_quota_status",
        "1 for the current quota state, 0 for the others",
        labels=["status"],
    )
    for state in QUOTA_STATES:
        status.add_metric([state], int(figures["quota_status"] == state))
    yield status

    info = GaugeMetricFamily(
        "cpusched_scheduler_info", "Scheduling mode and tier", labels=["mode", "tier"]
    )
    info.add_metric([figures["mode"] or "", figures["tier"] or ""], 1)
    yield info


def _websocket_metrics() -> Iterator[Metric]:
    stats = broadcaster.stats
    connections = GaugeMetricFamily(
        "cpusched_websocket_connections",
        "Open WebSockets in this web process",
        labels=["group"],
    )
    sent = CounterMetricFamily(
        "cpusched_websocket_messages_sent",
        "Messages written to WebSockets",
        labels=["group"],
    )
    dropped = CounterMetricFamily(
        "cpusched_websocket_messages_dropped",
        "Messages dropped because a client read too slowly",
        labels=["group"],
    )
    for group in GROUPS:
        connections.add_metric([group], len(broadcaster.clients[group]))
        sent.add_metric([group], stats.sent[group])
        dropped.add_metric([group], stats.dropped[group])
    refused = CounterMetricFamily(
        "cpusched_websocket_refused",
        "WebSockets refused, by reason",
        labels=["reason"],
    )
    for reason in ("origin", "unauthenticated", "full", "disabled"):
        refused.add_metric([reason], stats.refused[reason])
    yield from (connections, sent, dropped, refused)
    yield _gauge(
        "websocket_tick_seconds", "Duration of the last live push", stats.last_tick_s
    )


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"cpusched_{name}", help_text, value=value)


registry = CollectorRegistry(auto_describe=False)
registry.register(LiveCollector())
ProcessCollector(namespace="cpusched_web", registry=registry)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
