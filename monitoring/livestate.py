"""The one-row live state: written by runscheduler each tick, read by the web.

The row (:class:`~monitoring.models.LiveState`, id 1) holds the current
figures in ``data`` and the heartbeat in ``updated_at``. Writing it is one
UPDATE (an INSERT the very first time), the only ORM write of the scheduler's
per-second path.

Keys of ``data`` (see also :mod:`monitoring.live`, which presents them):

- readings: ``cpu_usage`` (raw whole-machine %, what the windows count),
  ``cpu_smoothed``, ``group_cpu``, ``outside_cpu`` (%), ``memory_usage`` (%),
  ``disk_io_read``, ``disk_io_write``, ``network_in``, ``network_out`` (B/s);
- windows: ``avg_mean``, ``avg_window_s``, ``avg_limit``,
  ``avg_remaining_percent``, ``avg_remaining_cpu_s``, ``peak_used_s``,
  ``peak_remaining_s``, ``peak_window_s``, ``run_time_at_100`` (s, null =
  for ever);
- control: ``cap`` (planned whole-machine cap, %), ``bound``, ``tier``,
  ``action``, ``reason``, ``mode``, ``group_cap`` (what the kernel enforces on
  the group, % of the machine, null = unlimited or unknown),
  ``group_target``, ``controlled`` (false when writes fail or in dry-run);
- ``reservation`` (active reservation's name or null), ``reservation_id``;
- ``backend``: ``{kind, path, degraded_reason, error}``;
- ``cpus``, ``cpus_offered``, ``ts`` (the last recorded second), ``stopped``;
- ``snapshot``: the CPU counters at the last stored sample with the boot id,
  so the next start can fill the gap exactly (see docs/runscheduler.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from monitoring.models import LiveState

STALE_AFTER_S = 5.0
"""A heartbeat older than this means the scheduler is stopped or stuck."""


def write(
    data: dict[str, Any],
    started_at: datetime | None = None,
    pid: int | None = None,
    now: datetime | None = None,
) -> None:
    """Store ``data`` as the live state; ``updated_at`` is the heartbeat.

    One plain UPDATE: this runs every second, and building the same ORM
    query each time costs ten times more than running it.
    """
    now = now or timezone.now()
    ops = connection.ops
    values = [
        ops.adapt_datetimefield_value(now),
        json.dumps(data, cls=DjangoJSONEncoder),
        ops.adapt_datetimefield_value(started_at),
        pid,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE, values)
        if cursor.rowcount:
            return
    LiveState.objects.create(
        id=1, updated_at=now, data=data, started_at=started_at, pid=pid
    )


_TABLE = LiveState._meta.db_table
_UPDATE = (
    f"UPDATE {_TABLE} SET updated_at = %s, data = %s, "
    "started_at = COALESCE(%s, started_at), pid = COALESCE(%s, pid) WHERE id = 1"
)


def is_running(age_s: float | None, data: Mapping[str, Any] | None = None) -> bool:
    """A fresh heartbeat, and not the final row of a clean stop."""
    if data is not None and data.get("stopped") is True:
        return False
    return age_s is not None and age_s <= STALE_AFTER_S


def read() -> dict[str, Any] | None:
    """The live data with ``alive`` and ``age_s`` added, or None if never written."""
    row = LiveState.objects.filter(id=1).first()
    if row is None:
        return None
    age = (timezone.now() - row.updated_at).total_seconds()
    data = dict(row.data)
    data["age_s"] = age
    data["alive"] = is_running(age, data)
    data["updated_at"] = row.updated_at.isoformat()
    data["pid"] = row.pid
    return data


def previous_snapshot() -> dict[str, Any] | None:
    """The counter snapshot a previous run left, for filling the gap since."""
    row = LiveState.objects.filter(id=1).values_list("data", flat=True).first()
    if not row:
        return None
    snapshot = row.get("snapshot")
    return snapshot if isinstance(snapshot, dict) else None
