"""Storage housekeeping run by the django-q2 worker: downsample, archive, expire.

What happens to a raw one-second sample as it ages:

* after ``database.downsample_after_days`` (when ``database.downsample_enabled``)
  it is folded into a :class:`SampleAggregate` row of
  ``database.downsample_interval`` seconds (mean, max, peak seconds) and
  deleted;
* otherwise it is deleted after ``database.retention_days``;
* before a raw row is deleted, it is appended to a gzip CSV file in
  ``DATA_DIR/archive`` when ``database.archive_enabled``.

Aggregate rows, archive files, decisions, events and resolved alerts are kept
for ``database.archive_days``. Deletes go in small batches so the scheduler's
writes never wait long for the lock.
"""

from __future__ import annotations

import csv
import gzip
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from alerts.models import Alert
from cpusched import config
from monitoring.models import Sample, SampleAggregate
from monitoring.retention import delete_in_batches
from scheduling.models import Decision, Event

logger = logging.getLogger(__name__)

DELETE_BATCH = 5000

_AGGREGATE_SQL = """
SELECT CAST(strftime('%%s', timestamp) AS INTEGER) / %s AS bucket,
       COUNT(*), AVG(cpu_usage), MAX(cpu_usage), SUM(is_peak),
       AVG(memory_usage), AVG(disk_io_read), AVG(disk_io_write),
       AVG(network_in), AVG(network_out), MAX(cpu_limit)
FROM monitoring_sample
WHERE timestamp < %s
GROUP BY bucket
"""


def housekeeping() -> dict[str, int]:
    """The daily job: every step below, with counts for the task result."""
    params = config.snapshot()
    now = timezone.now()
    done = {}
    raw_cutoff = now - timedelta(days=params["database.retention_days"])
    if params["database.downsample_enabled"]:
        days = min(
            params["database.downsample_after_days"], params["database.retention_days"]
        )
        raw_cutoff = now - timedelta(days=days)
        done["aggregated"] = downsample(raw_cutoff, params)
    if params["database.archive_enabled"]:
        done["archived"] = archive_samples(raw_cutoff)
    done["deleted_samples"] = delete_before(Sample, "timestamp", raw_cutoff)

    keep_cutoff = now - timedelta(days=params["database.archive_days"])
    done["deleted_aggregates"] = delete_before(
        SampleAggregate, "timestamp", keep_cutoff
    )
    done["deleted_decisions"] = delete_before(Decision, "timestamp", keep_cutoff)
    done["deleted_events"] = delete_before(Event, "timestamp", keep_cutoff)
    done["deleted_alerts"] = delete_before(
        Alert.objects.filter(resolved=True), "timestamp", keep_cutoff
    )
    done["deleted_archives"] = expire_archives(keep_cutoff)
    logger.info("Housekeeping done: %s", done)
    return done


def downsample(before: datetime, params: dict) -> int:
    """Fold raw samples older than ``before`` into aggregate rows."""
    interval = int(params["database.downsample_interval"])
    with connection.cursor() as cursor:
        cursor.execute(_AGGREGATE_SQL, [interval, before])
        rows = cursor.fetchall()

    aggregates = [_aggregate(row, interval) for row in rows]
    with transaction.atomic():
        SampleAggregate.objects.bulk_create(
            aggregates, batch_size=500, ignore_conflicts=True
        )
    return len(aggregates)


def _aggregate(row: tuple, interval: int) -> SampleAggregate:
    bucket, count, mean, high, peaks, mem, rd, wr, net_in, net_out, cap = row
    start = datetime.fromtimestamp(bucket * interval, tz=UTC)
    return SampleAggregate(
        timestamp=start,
        seconds=count,
        cpu_usage=mean,
        cpu_max=high,
        peak_seconds=peaks or 0,
        memory_usage=mem or 0,
        disk_io_read=rd or 0,
        disk_io_write=wr or 0,
        network_in=net_in or 0,
        network_out=net_out or 0,
        cpu_limit=cap,
    )


def archive_dir() -> Path:
    path = Path(settings.DATA_DIR) / "archive"
    path.mkdir(parents=True, exist_ok=True)
    return path


ARCHIVE_FIELDS = [
    "timestamp",
    "cpu_usage",
    "memory_usage",
    "disk_io_read",
    "disk_io_write",
    "network_in",
    "network_out",
    "group_cpu",
    "cpu_limit",
    "is_peak",
    "source",
]


def archive_samples(before: datetime) -> int:
    """Append raw samples older than ``before`` to per-day gzip CSV files."""
    rows = Sample.objects.filter(timestamp__lt=before).values_list(*ARCHIVE_FIELDS)
    written = 0
    handles: dict[str, tuple] = {}
    try:
        for row in rows.iterator(chunk_size=5000):
            day = row[0].strftime("%Y-%m-%d")
            if day not in handles:
                handles[day] = _open_archive(day)
            handles[day][1].writerow([row[0].isoformat(), *row[1:]])
            written += 1
    finally:
        for handle, _ in handles.values():
            handle.close()
    return written


def _open_archive(day: str) -> tuple:
    path = archive_dir() / f"samples-{day}.csv.gz"
    is_new = not path.exists()
    handle = gzip.open(path, "at", newline="")
    writer = csv.writer(handle)
    if is_new:
        writer.writerow(ARCHIVE_FIELDS)
    return handle, writer


def expire_archives(before: datetime) -> int:
    removed = 0
    for path in archive_dir().glob("samples-*.csv.gz"):
        day = path.name[len("samples-") : -len(".csv.gz")]
        try:
            stamp = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            continue
        if stamp < before:
            path.unlink()
            removed += 1
    return removed


def delete_before(source, field: str, before: datetime) -> int:
    """Delete rows older than ``before`` in short batches (see retention)."""
    return delete_in_batches(source, before, batch=DELETE_BATCH, field=field)


def vacuum() -> None:
    """Give freed pages back to the file system (needs a moment of no writers)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.execute("VACUUM")
    logger.info("VACUUM done")
