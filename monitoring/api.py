"""REST endpoints for live and historical measurements (``/api/monitoring``).

``current`` reads the scheduler's live-state row (the web process never
samples the machine). ``history`` aggregates stored samples in SQL into
buckets of ``resolution`` seconds aligned to the Unix epoch, so a chart can
ask for a day of 1-second rows and get a few hundred points; raw rows and
the per-minute rows that replace them after downsampling are combined.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from django.utils import timezone
from ninja import Query, Router, Schema
from ninja.errors import ValidationError
from pydantic import BaseModel, Field

from cpusched import runtime
from monitoring import history as buckets
from monitoring import live

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
    points, total = buckets.page(
        start, end, resolution, query.per_page, offset, runtime.params()
    )
    return {
        "data": points,
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
