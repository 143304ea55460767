"""Plausible monitoring data for pages under test: samples and a fake scheduler.

Run inside a process with Django set up against the server's database (see
``Server.python`` in conftest): ``fill_samples`` stores history the charts
draw, ``run_scheduler`` rewrites the live state row once a second the way
runscheduler does, so the dashboard has something to show and to update.
"""

from __future__ import annotations

import math
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

PEAK_THRESHOLD = 95.0


def cpu_at(ts: int, rng: random.Random) -> float:
    """A day-shaped load: busy office hours, a nightly batch burst, noise."""
    hour = (ts % 86400) / 3600
    base = 18 + 14 * math.sin((hour - 9) / 24 * 2 * math.pi)
    if 2.0 <= hour < 2.08:
        base = 97.0
    value = base + rng.gauss(0, 6)
    if rng.random() < 0.002:
        value = 98.0
    return max(0.5, min(100.0, value))


def fill_samples(hours: float = 24.0, end: datetime | None = None) -> int:
    """Store one sample per second for the ``hours`` before ``end``."""
    from monitoring.models import Sample

    end = end or datetime.now(tz=UTC)
    end_ts = int(end.timestamp())
    rng = random.Random(4)
    rows = []
    for ts in range(end_ts - int(hours * 3600), end_ts):
        cpu = cpu_at(ts, rng)
        rows.append(
            Sample(
                timestamp=datetime.fromtimestamp(ts, tz=UTC),
                cpu_usage=round(cpu, 2),
                memory_usage=round(52 + 8 * math.sin(ts / 5400) + rng.gauss(0, 1), 2),
                disk_io_read=max(
                    0.0, 2e6 + 1.5e6 * math.sin(ts / 900) + rng.gauss(0, 3e5)
                ),
                disk_io_write=max(0.0, 8e5 + rng.gauss(0, 2e5)),
                network_in=max(
                    0.0, 4e5 + 3e5 * math.sin(ts / 1300) + rng.gauss(0, 5e4)
                ),
                network_out=max(0.0, 1.5e5 + rng.gauss(0, 3e4)),
                cpu_limit=85.0 if cpu < 60 else 60.0,
                is_peak=cpu >= PEAK_THRESHOLD,
            )
        )
    Sample.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)
    return len(rows)


def live_data(ts: float, rng: random.Random, tick: int) -> dict[str, Any]:
    """One second of live state, in the keys runscheduler writes."""
    cpu = round(25 + 20 * math.sin(tick / 7) + rng.uniform(-3, 3), 1)
    return {
        "ts": int(ts),
        "cpu_usage": cpu,
        "cap": 85.0 if tick % 20 < 15 else 60.0,
        "bound": 92.5,
        "mode": "balanced",
        "tier": "plenty",
        "avg_mean": round(24.0 + tick * 0.001, 3),
        "avg_remaining_percent": 20.0,
        "avg_remaining_cpu_s": 259200.0,
        "peak_used_s": 310,
        "peak_remaining_s": 290,
        "run_time_at_100": 3600 - tick,
        "reservation": "Nightly <b>batch</b>",
        "memory_usage": round(55 + rng.uniform(-2, 2), 1),
        "disk_io_read": 2.0e6 + rng.uniform(0, 5e5),
        "disk_io_write": 7.0e5 + rng.uniform(0, 2e5),
        "network_in": 4.0e5 + rng.uniform(0, 1e5),
        "network_out": 1.2e5 + rng.uniform(0, 4e4),
    }


def write_live_state(data: dict[str, Any], when: datetime | None = None) -> None:
    from monitoring.models import LiveState

    when = when or datetime.now(tz=UTC)
    LiveState.objects.update_or_create(
        id=1, defaults={"updated_at": when, "data": data, "pid": 0}
    )


def run_scheduler(seconds: float = 600.0) -> None:
    """Rewrite the live state row once a second until stopped (SIGTERM)."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    rng = random.Random(7)
    start = time.monotonic()
    tick = 0
    while not stopping and time.monotonic() - start < seconds:
        now = datetime.now(tz=UTC)
        write_live_state(live_data(now.timestamp(), rng, tick), now)
        tick += 1
        time.sleep(max(0.0, start + tick - time.monotonic()))


def stale_live_state(age_s: float = 60.0) -> None:
    """A live state row whose heartbeat is ``age_s`` old (a stopped scheduler)."""
    when = datetime.now(tz=UTC) - timedelta(seconds=age_s)
    write_live_state(live_data(when.timestamp(), random.Random(1), 0), when)
