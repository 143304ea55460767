"""REST endpoints for live and historical measurements (``/api/monitoring``).

``current`` reads the scheduler's live-state row (the web process never
samples the machine). ``history`` aggregates stored samples in SQL into
buckets of ``resolution`` seconds aligned to the Unix epoch, so a chart can
ask for a day of 1-second rows and get a few hundred points; raw rows and
the per-minute rows that replace them after downsampling are combined.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from django.db import connection
from django.utils import timezone
from ninja import Query, Router, Schema
from ninja.errors import ValidationError
from pydantic import BaseModel, Field

from cpusched import runtime
from monitoring import live
from monitoring.models import Sample, SampleAggregate

router = Router(tags=["monitoring"])

# The longest range one history query may cover (a leap year and a day).
MAX_SPAN = timedelta(days=367)

# Points per page at most: bounded so one response stays small.
MAX_PER_PAGE = 10000

# A bucket longer than a day is never useful for these charts.
MAX_RESOLUTION_S = 86400


class DiskIO(Schema):
    read: float | None
    write: float | None


class Network(Schema):
    in_: float | None = Field(alias="in")
    out: float | None


class QuotaRemaining(Schema):
    avg_quota: float | None = Field(
        description="Average limit minus the window's mean, in percentage points"
    )
    peak_quota: float | None = Field(description="Peak seconds left in the window")


class Current(Schema):
    timestamp: datetime | None = Field(description="When the scheduler wrote it")
    cpu_usage: float | None = Field(description="Whole machine, % of all CPUs")
    memory_usage: float | None
    disk_io: DiskIO = Field(description="Bytes per second")
    network: Network = Field(description="Bytes per second")
    window_12h_avg: float | None = Field(description="Mean over the average window")
    window_24h_peak: float | None = Field(description="Peak seconds used")
    current_limit: float | None = Field(description="The cap now, %")
    quota_remaining: QuotaRemaining
    quota_status: str = Field(description="normal, warning, critical or exhausted")
    group_cpu: float | None
    bound: float | None = Field(description="The planner's largest safe cap, %")
    avg_limit: float
    avg_remaining_percent: float | None
    avg_remaining_cpu_s: float | None
    peak_budget_s: int
    run_time_at_100: float | None = Field(
        description="Seconds 100 % may last from now; null: without end"
    )
    mode: str | None
    tier: str | None
    reservation: str | None
    heartbeat_age: float | None = Field(description="Seconds since the last write")
    scheduler_running: bool


class HistoryQuery(Schema):
    start: datetime | None = Field(
        None, description="Range start (ISO 8601; without offset: UTC)"
    )
    end: datetime | None = Field(None, description="Range end, exclusive; now")
    hours: float | None = Field(
        None, gt=0, le=MAX_SPAN.days * 24, description="Range length when no start"
    )
    resolution: int | None = Field(
        None,
        ge=1,
        le=MAX_RESOLUTION_S,
        description="Seconds per point; automatic when absent",
    )
    max_points: int | None = Field(
        None,
        ge=10,
        le=MAX_PER_PAGE,
        description="Points at most for automatic resolution "
        "(default performance.chart_max_points)",
    )
    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(1000, ge=1, le=MAX_PER_PAGE)


# Plain pydantic models: ninja's Schema reads each field through an ORM-aware
# getter, which cost more than the SQL for a thousand points.
class HistoryPoint(BaseModel):
    timestamp: datetime = Field(description="Start of the bucket")
    samples: int = Field(description="Seconds measured in the bucket (0: a gap)")
    cpu_usage: float | None = Field(description="Mean, % of all CPUs")
    cpu_max: float | None
    peak_seconds: int
    memory_usage: float | None
    disk_io_read: float | None
    disk_io_write: float | None
    network_in: float | None
    network_out: float | None
    cpu_limit: float | None = Field(description="Mean cap")


class History(BaseModel):
    data: list[HistoryPoint]
    total: int = Field(description="Points (buckets) in the whole range")
    page: int
    per_page: int
    resolution: int = Field(description="Seconds per point")
    start: datetime
    end: datetime


@router.get("/current", response=Current, by_alias=True, summary="Current system state")
def current(request) -> dict[str, Any]:
    return live.current(live.read(), runtime.params())


@router.get("/history", response=History, summary="Measurements over a range")
def history(request, query: Query[HistoryQuery]) -> dict[str, Any]:
    start, end = _range(query)
    resolution = query.resolution or _auto_resolution(start, end, query)
    offset = (query.page - 1) * query.per_page
    rows, total = _buckets(start, end, resolution, query.per_page, offset)
    return {
        "data": _points(rows),
        "total": total,
        "page": query.page,
        "per_page": query.per_page,
        "resolution": resolution,
        "start": start,
        "end": end,
    }


def _range(query: HistoryQuery) -> tuple[datetime, datetime]:
    """The UTC range asked for, or a 422 naming the field that is wrong."""
    try:
        end = _utc(query.end) if query.end else timezone.now()
        if query.start:
            start = _utc(query.start)
        else:
            start = end - timedelta(hours=query.hours or 1)
    except (OverflowError, ValueError):
        _refuse("start", "the range falls outside the years 1 to 9999")
    if end <= start:
        _refuse("end", f"must be after start ({start.isoformat()})")
    if end - start > MAX_SPAN:
        _refuse("start", f"the range may cover {MAX_SPAN.days} days at most")
    return start, end


def _utc(moment: datetime) -> datetime:
    if timezone.is_naive(moment):
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _refuse(field: str, message: str) -> NoReturn:
    error = {"loc": ["query", field], "msg": message, "type": "value_error"}
    raise ValidationError([error])


def _auto_resolution(start: datetime, end: datetime, query: HistoryQuery) -> int:
    points = query.max_points or runtime.params()["performance.chart_max_points"]
    seconds = (end - start).total_seconds()
    return min(MAX_RESOLUTION_S, max(1, math.ceil(seconds / points)))


# One correlated subquery per bucket walks the timestamp index over just that
# bucket, so the rows arrive pre-grouped: no temporary B-tree to sort 86,400
# rows by a computed key (a plain GROUP BY took 3 to 5 times longer). Each
# subquery packs its figures, in the order of _FIELDS, into one JSON array.
# Downsampled rows stand for ``seconds`` seconds each; their means are
# weighted by that.
_HISTORY_SQL = """
WITH RECURSIVE buckets(b) AS (
    SELECT %(first)s
    UNION ALL
    SELECT b + %(res)s FROM buckets WHERE b + %(res)s < %(stop)s
)
SELECT b,
    (SELECT json_array(COUNT(*), AVG(cpu_usage), MAX(cpu_usage), SUM(is_peak),
            AVG(memory_usage), AVG(disk_io_read), AVG(disk_io_write),
            AVG(network_in), AVG(network_out), AVG(cpu_limit), COUNT(cpu_limit))
       FROM {sample}
      WHERE timestamp >= datetime(max(b, %(start)s), 'unixepoch')
        AND timestamp < datetime(min(b + %(res)s, %(end)s), 'unixepoch')),
{aggregated}
  FROM buckets
"""

# Skipped (replaced by _NO_AGGREGATES) when the range holds no downsampled row,
# the usual case for recent ranges: it halves the index probes.
_AGGREGATED_SQL = """
    (SELECT json_array(SUM(seconds), SUM(cpu_usage * seconds) / SUM(seconds),
            MAX(cpu_max), SUM(peak_seconds),
            SUM(memory_usage * seconds) / SUM(seconds),
            SUM(disk_io_read * seconds) / SUM(seconds),
            SUM(disk_io_write * seconds) / SUM(seconds),
            SUM(network_in * seconds) / SUM(seconds),
            SUM(network_out * seconds) / SUM(seconds),
            SUM(cpu_limit * seconds) / SUM(IIF(cpu_limit IS NULL, 0, seconds)),
            SUM(IIF(cpu_limit IS NULL, 0, seconds)))
       FROM {aggregate}
      WHERE timestamp >= datetime(max(b, %(start)s), 'unixepoch')
        AND timestamp < datetime(min(b + %(res)s, %(end)s), 'unixepoch'))
"""

_NO_AGGREGATES = "'[0]'"

_FIELDS = (
    "samples",
    "cpu_usage",
    "cpu_max",
    "peak_seconds",
    "memory_usage",
    "disk_io_read",
    "disk_io_write",
    "network_in",
    "network_out",
    "cpu_limit",
    "cap_seconds",
)
_MEANS = ("cpu_usage", "memory_usage", "disk_io_read", "disk_io_write")
_MEANS += ("network_in", "network_out", "cpu_limit")


def _buckets(
    start: datetime, end: datetime, resolution: int, limit: int, offset: int
) -> tuple[list[tuple], int]:
    """One page of buckets (empty ones included) and the range's bucket count.

    The range is taken at whole seconds (start rounded down, end up).
    """
    start_s = math.floor(start.timestamp())
    end_s = math.ceil(end.timestamp())
    origin = start_s // resolution * resolution
    total = math.ceil((end_s - origin) / resolution)
    if offset >= total:
        return [], total

    first = origin + offset * resolution
    stop = min(end_s, first + limit * resolution)
    params = {
        "first": first,
        "stop": stop,
        "res": resolution,
        "start": start_s,
        "end": end_s,
    }
    aggregated = _NO_AGGREGATES
    if _has_aggregates(start_s, end_s):
        aggregated = _AGGREGATED_SQL.format(aggregate=SampleAggregate._meta.db_table)
    sql = _HISTORY_SQL.format(sample=Sample._meta.db_table, aggregated=aggregated)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall(), total


def _has_aggregates(start_s: int, end_s: int) -> bool:
    start = datetime.fromtimestamp(start_s, tz=UTC)
    end = datetime.fromtimestamp(end_s, tz=UTC)
    rows = SampleAggregate.objects.filter(timestamp__gte=start, timestamp__lt=end)
    return rows.exists()


def _points(rows: list[tuple]) -> list[dict[str, Any]]:
    # One parse for the page: a thousand json.loads calls cost more.
    packed = ",".join(f"[{b},{raw},{aggregated}]" for b, raw, aggregated in rows)
    return [_point(*row) for row in json.loads(f"[{packed}]")]


def _point(bucket: int, raw: list, aggregated: list) -> dict[str, Any]:
    if not aggregated[0]:
        values = raw
    elif not raw[0]:
        values = aggregated
    else:  # a bucket straddling the downsampling boundary
        values = _combine(raw, aggregated)
    point = dict(zip(_FIELDS, values, strict=True))
    del point["cap_seconds"]
    for name in _MEANS:
        point[name] = _finite(point[name])
    point["cpu_max"] = _finite(point["cpu_max"])
    point["peak_seconds"] = int(point["peak_seconds"] or 0)
    point["timestamp"] = datetime.fromtimestamp(bucket, tz=UTC)
    return point


def _combine(raw: list, aggregated: list) -> list:
    """Merge two packed arrays, weighting each mean by its seconds."""
    seconds = raw[0] + aggregated[0]
    merged = dict(zip(_FIELDS, raw, strict=True))
    other = dict(zip(_FIELDS, aggregated, strict=True))
    for name in _MEANS:
        weight, other_weight = raw[0], aggregated[0]
        if name == "cpu_limit":
            weight, other_weight = raw[10] or 0, aggregated[10] or 0
        merged[name] = _weighted(merged[name], weight, other[name], other_weight)
    merged["samples"] = seconds
    merged["cpu_max"] = max(raw[2], aggregated[2])
    merged["peak_seconds"] = (raw[3] or 0) + (aggregated[3] or 0)
    merged["cap_seconds"] = (raw[10] or 0) + (aggregated[10] or 0)
    return [merged[name] for name in _FIELDS]


def _weighted(a: float | None, wa: float, b: float | None, wb: float) -> float | None:
    if a is None or not wa:
        return b
    if b is None or not wb:
        return a
    return (a * wa + b * wb) / (wa + wb)


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 3)
