"""The scheduler's live state as the API, sockets and metrics present it.

``runscheduler`` rewrites one :class:`~monitoring.models.LiveState` row every
second; its ``updated_at`` is the heartbeat. The web process never samples
the machine itself: everything here is read from that row.

Keys read from ``LiveState.data`` (absent keys are reported as null):

- ``cpu_usage``, ``memory_usage`` (%), ``disk_io_read``, ``disk_io_write``,
  ``network_in``, ``network_out`` (bytes per second), ``group_cpu`` (%);
- ``cap`` (the cap now, % of the whole machine), ``bound`` (the planner's
  largest safe cap), ``mode``, ``tier``, ``action``, ``reason``;
- ``avg_mean`` (mean CPU over the average window, %),
  ``avg_remaining_percent`` (share of the average budget left, %),
  ``avg_remaining_cpu_s``, ``peak_used_s``, ``peak_remaining_s``,
  ``run_time_at_100`` (seconds; null means "for ever");
- ``reservation`` (the active reservation's name, or null);
- ``stopped`` (true in the last row a cleanly stopped scheduler writes).

:mod:`monitoring.livestate` writes the row and lists every key.

Limits (``limits.avg_max_usage``, ``limits.peak_max_duration``...) come from
the parameters, not from the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from monitoring import livestate
from monitoring.models import LiveState

# A heartbeat older than this means the scheduler is stopped or stuck; the
# scheduler's own module owns the figure so both sides agree on it.
STALE_AFTER_S = livestate.STALE_AFTER_S
is_running = livestate.is_running

_NUMBERS = (
    "cpu_usage",
    "memory_usage",
    "disk_io_read",
    "disk_io_write",
    "network_in",
    "network_out",
    "group_cpu",
    "cap",
    "bound",
    "avg_mean",
    "avg_remaining_percent",
    "avg_remaining_cpu_s",
    "peak_used_s",
    "peak_remaining_s",
    "run_time_at_100",
)


def read() -> LiveState | None:
    """The live-state row, or None when no scheduler has ever written one."""
    return LiveState.objects.filter(id=1).first()


def heartbeat_age(row: LiveState | None, now: datetime | None = None) -> float | None:
    """Seconds since the scheduler's last write, or None without a row."""
    if row is None:
        return None
    now = now or timezone.now()
    return max(0.0, (now - row.updated_at).total_seconds())


def number(data: Mapping[str, Any], key: str) -> float | None:
    """A finite number from the row's data, or None (bad values are skipped)."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def quota_status(
    avg_quota: float | None, peak_left_s: float | None, params: Mapping[str, Any]
) -> str:
    """``normal``, ``warning``, ``critical`` or ``exhausted`` by the alert limits.

    ``avg_quota`` is in percentage points of CPU (limit minus the window's
    mean), as ``limits.avg_*_threshold`` are.
    """
    if (avg_quota is not None and avg_quota <= 0) or (
        peak_left_s is not None and peak_left_s <= 0
    ):
        return "exhausted"
    levels = [
        (avg_quota, "limits.avg_critical_threshold", "limits.avg_warning_threshold"),
        (
            peak_left_s,
            "limits.peak_critical_threshold",
            "limits.peak_warning_threshold",
        ),
    ]
    status = "normal"
    for left, critical, warning in levels:
        if left is None:
            continue
        if left <= params[critical]:
            return "critical"
        if left <= params[warning]:
            status = "warning"
    return status


def current(
    row: LiveState | None, params: Mapping[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """The design's ``/api/monitoring/current`` object, plus live extras."""
    now = now or timezone.now()
    data = row.data if row is not None and isinstance(row.data, dict) else {}
    values = {key: number(data, key) for key in _NUMBERS}
    age = heartbeat_age(row, now)

    avg_limit = params["limits.avg_max_usage"]
    mean = values["avg_mean"]
    avg_quota = None if mean is None else round(avg_limit - mean, 3)
    peak_left = values["peak_remaining_s"]
    return {
        "timestamp": row.updated_at if row is not None else None,
        "cpu_usage": values["cpu_usage"],
        "memory_usage": values["memory_usage"],
        "disk_io": {"read": values["disk_io_read"], "write": values["disk_io_write"]},
        "network": {"in": values["network_in"], "out": values["network_out"]},
        "window_12h_avg": mean,
        "window_24h_peak": values["peak_used_s"],
        "current_limit": values["cap"],
        "quota_remaining": {"avg_quota": avg_quota, "peak_quota": peak_left},
        "quota_status": quota_status(avg_quota, peak_left, params),
        "group_cpu": values["group_cpu"],
        "bound": values["bound"],
        "avg_limit": avg_limit,
        "avg_remaining_percent": values["avg_remaining_percent"],
        "avg_remaining_cpu_s": values["avg_remaining_cpu_s"],
        "peak_budget_s": params["limits.peak_max_duration"],
        "run_time_at_100": values["run_time_at_100"],
        "mode": _text(data, "mode") or params["scheduler.mode"],
        "tier": _text(data, "tier"),
        "reservation": _text(data, "reservation"),
        "heartbeat_age": None if age is None else round(age, 3),
        "scheduler_running": is_running(age, data),
    }


def _text(data: Mapping[str, Any], key: str) -> str | None:
    """Short text from the row; a mapping is named by its ``name`` entry."""
    value = data.get(key)
    if isinstance(value, Mapping):
        value = value.get("name")
    if value is None or value == "":
        return None
    return str(value)[:200]
