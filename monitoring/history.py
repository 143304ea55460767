"""Measurements over a range, aggregated in SQL into fixed-length buckets.

Buckets are ``resolution`` seconds long and aligned to the Unix epoch, so the
same bucket always covers the same seconds and a chart can keep extending a
series. Every bucket of the range is returned, an empty one with ``samples``
0 and null means (a gap a chart leaves open rather than drawing a false 0).
Raw one-second rows and the downsampled rows that replace them after
``database.downsample_after_days`` are combined, each mean weighted by the
seconds behind it.

Buckets that lie wholly in the settled past are cached in memory in chunks of
:data:`CHUNK` buckets, when ``performance.cache_enabled``, for
``performance.cache_ttl`` seconds and at most ``performance.cache_max_size``
chunks (about 20 kB each). "Settled" means older than the scheduler's batch
insert interval plus a margin. A gap the scheduler fills in later (after a
restart) is therefore seen at most ``cache_ttl`` seconds late.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from monitoring.models import Sample, SampleAggregate

# Buckets per cache entry: a 720-point chart is 12 entries.
CHUNK = 60

# Seconds, beyond database.batch_interval, before a bucket counts as settled.
SETTLE_MARGIN_S = 5


def page(
    start: datetime,
    end: datetime,
    resolution: int,
    limit: int,
    offset: int,
    params: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], int]:
    """One page of points and how many the whole range has.

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
    span = Span(start_s, end_s, resolution, _has_aggregates(start_s, end_s))
    if params["performance.cache_enabled"]:
        rows = _cached_rows(span, first, stop, params)
    else:
        rows = span.query(first, stop)
    return _points(rows), total


class Span:
    """A request's range and resolution, which bound every query it makes."""

    def __init__(self, start_s: int, end_s: int, resolution: int, aggregated: bool):
        self.start_s = start_s
        self.end_s = end_s
        self.resolution = resolution
        self.aggregated = aggregated

    def query(self, first: int, stop: int) -> list[tuple]:
        """Rows ``(bucket, raw json, downsampled json)`` for [first, stop)."""
        if first >= stop:
            return []
        aggregated = _NO_AGGREGATES
        if self.aggregated:
            aggregated = _AGGREGATED_SQL.format(
                aggregate=SampleAggregate._meta.db_table
            )
        sql = _HISTORY_SQL.format(sample=Sample._meta.db_table, aggregated=aggregated)
        params = {
            "first": first,
            "stop": stop,
            "res": self.resolution,
            "start": self.start_s,
            "end": self.end_s,
        }
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


def _cached_rows(
    span: Span, first: int, stop: int, params: Mapping[str, Any]
) -> list[tuple]:
    """Rows for [first, stop), whole settled chunks from the cache."""
    settled = min(
        span.end_s,
        int(time.time() - params["database.batch_interval"] - SETTLE_MARGIN_S),
    )
    length = span.resolution * CHUNK
    rows: list[tuple] = []
    direct_from = first
    bucket = first
    while bucket < stop:
        chunk = bucket // length * length
        if chunk >= span.start_s and chunk + length <= settled:
            rows += span.query(direct_from, bucket)
            chunk_rows = _chunk(span, chunk, params)
            rows += [row for row in chunk_rows if bucket <= row[0] < stop]
            direct_from = chunk + length
        bucket = chunk + length
    rows += span.query(direct_from, stop)
    return rows


def _chunk(span: Span, chunk: int, params: Mapping[str, Any]) -> list[tuple]:
    key = (span.resolution, chunk)
    rows = cache.get(key)
    if rows is None:
        rows = span.query(chunk, chunk + span.resolution * CHUNK)
        cache.put(
            key,
            rows,
            ttl=params["performance.cache_ttl"],
            size=params["performance.cache_max_size"],
        )
    return rows


class ChunkCache:
    """A small LRU of computed chunks, per process, safe across threads."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, tuple[float, list]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> list | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple, rows: list, ttl: float, size: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, rows)
            self._entries.move_to_end(key)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = ChunkCache()


def _has_aggregates(start_s: int, end_s: int) -> bool:
    start = datetime.fromtimestamp(start_s, tz=UTC)
    end = datetime.fromtimestamp(end_s, tz=UTC)
    rows = SampleAggregate.objects.filter(timestamp__gte=start, timestamp__lt=end)
    return rows.exists()


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
