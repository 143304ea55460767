"""Three writers on one SQLite file at once, as in production.

The pitfall: a sampler inserting a row a second, a retention job deleting a
million old rows, and an API view that reads then writes inside
``transaction.atomic()`` five times a second. With default SQLite settings the
API view fails at once with "database is locked" (a deferred transaction
cannot upgrade its read lock while another process writes) and a one-shot
delete starves the sampler. With WAL, IMMEDIATE transactions, a busy timeout
and batched deletes, none of them fails and no row is lost.

The slow test runs each writer as its own process (this file, run as a
script) against a real database file for ``CPUSCHED_CONCURRENCY_SECONDS``
(default 120).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("CPUSCHED_CONCURRENCY_SECONDS", "120"))
OLD_ROWS = int(os.environ.get("CPUSCHED_CONCURRENCY_OLD_ROWS", "1000000"))
OLD_START = datetime(2000, 1, 1, tzinfo=UTC)
API_RATE_HZ = 5


# -- the fast checks of the batched delete ------------------------------------


def make_samples(count: int, start: datetime) -> None:
    from monitoring.models import Sample

    Sample.objects.bulk_create(
        Sample(timestamp=start + timedelta(seconds=i), cpu_usage=i % 100)
        for i in range(count)
    )


@pytest.mark.django_db
def test_delete_in_batches_removes_only_rows_older_than_the_cutoff() -> None:
    from monitoring.models import Sample
    from monitoring.retention import delete_in_batches

    make_samples(1050, OLD_START)
    cutoff = OLD_START + timedelta(seconds=1000)

    deleted = delete_in_batches(Sample, cutoff, batch=100, pause=0)

    assert deleted == 1000
    assert Sample.objects.count() == 50
    assert Sample.objects.order_by("timestamp").first().timestamp == cutoff


@pytest.mark.django_db
def test_delete_in_batches_accepts_a_queryset_and_keeps_what_it_excludes() -> None:
    from monitoring.models import Sample
    from monitoring.retention import delete_in_batches

    make_samples(300, OLD_START)
    Sample.objects.filter(cpu_usage__lt=50).update(is_peak=True)
    peaks = Sample.objects.filter(is_peak=True)

    deleted = delete_in_batches(peaks, OLD_START + timedelta(days=1), batch=7, pause=0)

    assert deleted == 150
    assert set(Sample.objects.values_list("is_peak", flat=True)) == {False}


@pytest.mark.django_db
def test_delete_in_batches_uses_one_transaction_per_batch(
    django_assert_max_num_queries,
) -> None:
    from monitoring.models import Sample
    from monitoring.retention import delete_in_batches

    make_samples(1000, OLD_START)

    with django_assert_max_num_queries(60) as queries:
        delete_in_batches(Sample, OLD_START + timedelta(days=1), batch=100, pause=0)

    deletes = [q for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 11


@pytest.mark.django_db
def test_delete_in_batches_refuses_an_empty_batch() -> None:
    from monitoring.models import Sample
    from monitoring.retention import delete_in_batches

    with pytest.raises(ValueError, match="batch=0: expected a positive number"):
        delete_in_batches(Sample, OLD_START, batch=0)


# -- the three writers ----------------------------------------------------------


def sampler(seconds: float) -> dict:
    """One row a second, like the scheduler's sampler at its slowest batching."""
    from monitoring.models import Sample

    written, errors = [], []
    start = int(time.time())
    deadline = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < deadline:
        stamp = datetime.fromtimestamp(start + tick, tz=UTC)
        began = time.monotonic()
        try:
            Sample.objects.create(timestamp=stamp, cpu_usage=tick % 100)
            written.append(stamp.isoformat())
        except Exception as exc:  # every failure is the finding, keep going
            errors.append(f"{type(exc).__name__}: {exc}")
        tick += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    return {"written": written, "errors": errors}


def deleter(seconds: float) -> dict:
    """The retention job: every old row, in batches."""
    from monitoring.models import Sample
    from monitoring.retention import delete_in_batches

    began = time.time()
    errors = []
    deleted = 0
    try:
        deleted = delete_in_batches(Sample, OLD_START + timedelta(days=3650))
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    return {"deleted": deleted, "began": began, "ended": time.time(), "errors": errors}


def api(seconds: float) -> dict:
    """An API view: read, then write, in one transaction, five times a second."""
    from django.db import transaction
    from django.utils import timezone

    from monitoring.models import LiveState, Sample
    from scheduling.models import Event

    done, errors, slowest = 0, [], 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        try:
            with transaction.atomic():
                latest = Sample.objects.order_by("-timestamp").first()
                seen = LiveState.objects.filter(id=1).first()
                count = seen.data.get("count", 0) if seen else 0
                LiveState.objects.update_or_create(
                    id=1,
                    defaults={
                        "updated_at": timezone.now(),
                        "data": {"count": count + 1},
                    },
                )
                Event.objects.create(
                    timestamp=timezone.now(),
                    kind="api",
                    message=str(latest.timestamp if latest else None),
                )
            done += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        elapsed = time.monotonic() - began
        slowest = max(slowest, elapsed)
        time.sleep(max(0.0, 1 / API_RATE_HZ - elapsed))
    return {"done": done, "errors": errors, "slowest_s": slowest}


ROLES = {"sampler": sampler, "deleter": deleter, "api": api}


def main(role: str, seconds: str, output: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpusched.settings")
    import django

    django.setup()
    result = ROLES[role](float(seconds))
    Path(output).write_text(json.dumps(result))


# -- the slow test ----------------------------------------------------------------


def environment(data: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("CPUSCHED_")}
    return keep | {"CPUSCHED_DATA_DIR": str(data), "CPUSCHED_LOG_LEVEL": "WARNING"}


def fill_old_rows(database: Path, count: int) -> None:
    """Insert ``count`` one-second rows starting in 2000, the fast way."""
    start = int(OLD_START.timestamp())
    rows = (
        (
            datetime.fromtimestamp(start + i, tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
            float(i % 100),
        )
        for i in range(count)
    )
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO monitoring_sample (timestamp, cpu_usage, memory_usage,"
            " disk_io_read, disk_io_write, network_in, network_out, is_peak, source)"
            " VALUES (?, ?, 0, 0, 0, 0, 0, 0, 'measured')",
            rows,
        )


@pytest.mark.slow
def test_three_writers_at_once_lose_nothing_and_never_see_a_locked_database(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"],
        env=env,
        check=True,
        timeout=300,
    )
    database = tmp_path / "db.sqlite3"
    fill_old_rows(database, OLD_ROWS)

    workers = {}
    for role in ROLES:
        out = tmp_path / f"{role}.json"
        command = [sys.executable, __file__, role, str(SECONDS), str(out)]
        workers[role] = (
            subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True),
            out,
        )
    results, stderr = {}, {}
    for role, (process, out) in workers.items():
        _, stderr[role] = process.communicate(timeout=SECONDS + 600)
        assert process.returncode == 0, f"{role} failed:\n{stderr[role]}"
        results[role] = json.loads(out.read_text())

    sampled, deleted, served = results["sampler"], results["deleter"], results["api"]
    assert not any("locked" in text for text in stderr.values()), stderr
    assert sampled["errors"] == deleted["errors"] == served["errors"] == []
    assert deleted["deleted"] == OLD_ROWS
    assert len(sampled["written"]) >= SECONDS * 0.9
    assert served["done"] >= SECONDS * API_RATE_HZ * 0.8

    with sqlite3.connect(database) as db:
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        stamps = [
            row[0]
            for row in db.execute(
                "SELECT timestamp FROM monitoring_sample ORDER BY timestamp"
            )
        ]
        events = db.execute(
            "SELECT COUNT(*) FROM scheduling_event WHERE kind = 'api'"
        ).fetchone()[0]
        (live,) = db.execute("SELECT data FROM monitoring_livestate").fetchone()

    assert journal == "wal"
    expected = [
        datetime.fromisoformat(s).strftime("%Y-%m-%d %H:%M:%S")
        for s in sampled["written"]
    ]
    assert stamps == expected, "sampled rows were lost or old rows survived"
    assert events == served["done"]
    assert json.loads(live)["count"] == served["done"]

    # The delete really overlapped the other writers.
    overlap = [
        s
        for s in sampled["written"]
        if deleted["began"] <= datetime.fromisoformat(s).timestamp() <= deleted["ended"]
    ]
    assert len(overlap) >= 2, (deleted, len(sampled["written"]))
    print(
        f"\n{len(stamps)} rows sampled, {deleted['deleted']} deleted in "
        f"{deleted['ended'] - deleted['began']:.1f} s, {served['done']} API "
        f"transactions (slowest {served['slowest_s'] * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
