"""Downsampling, archiving and expiry of stored samples."""

import gzip
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from cpusched import config
from monitoring import tasks
from monitoring.models import Sample, SampleAggregate

pytestmark = pytest.mark.django_db


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _samples(start: datetime, values: list[float]) -> None:
    Sample.objects.bulk_create(
        Sample(
            timestamp=start + timedelta(seconds=i),
            cpu_usage=v,
            is_peak=v >= 95,
            memory_usage=50,
        )
        for i, v in enumerate(values)
    )


def test_old_samples_are_folded_into_minute_rows_and_deleted():
    old = _minute(timezone.now() - timedelta(days=10))
    _samples(old, [10.0] * 30 + [100.0] * 30 + [20.0] * 60)
    recent = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    _samples(recent, [42.0] * 10)

    done = tasks.housekeeping()

    rows = list(SampleAggregate.objects.order_by("timestamp"))
    assert [r.seconds for r in rows] == [60, 60]
    assert rows[0].cpu_usage == pytest.approx(55.0)
    assert rows[0].cpu_max == 100.0
    assert rows[0].peak_seconds == 30
    assert rows[1].cpu_usage == pytest.approx(20.0)
    assert done["deleted_samples"] == 120
    assert Sample.objects.count() == 10


def test_archiving_writes_every_expired_sample_to_a_gzip_file_first():
    config.apply({"database.archive_enabled": True})
    old = datetime.combine(
        (timezone.now() - timedelta(days=20)).date(), time(1), tzinfo=UTC
    )
    _samples(old, [1.0, 2.0, 3.0])

    tasks.housekeeping()

    path = tasks.archive_dir() / f"samples-{old:%Y-%m-%d}.csv.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    assert lines[0].startswith("timestamp,cpu_usage")
    assert [line.split(",")[1] for line in lines[1:]] == ["1.0", "2.0", "3.0"]
    assert Sample.objects.count() == 0
    path.unlink()


def test_batched_delete_removes_exactly_the_rows_before_the_cutoff(monkeypatch):
    monkeypatch.setattr(tasks, "DELETE_BATCH", 7)
    start = datetime(2021, 5, 1, tzinfo=UTC)
    _samples(start, [5.0] * 50)

    deleted = tasks.delete_before(Sample, "timestamp", start + timedelta(seconds=30))

    assert deleted == 30
    assert Sample.objects.count() == 20
    assert Sample.objects.earliest("timestamp").timestamp == start + timedelta(
        seconds=30
    )
