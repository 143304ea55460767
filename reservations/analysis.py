"""Reserved slots against the CPU actually used in the same hours.

For past slots: what the machine used during the slot (mean and highest CPU
%) next to what was reserved. For coming slots: what it used in the same
hours one day and one week earlier, a hint of whether the reservation is
sized to the workload. Usage comes from the stored samples, and from the
per-minute rows once samples were downsampled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Avg, Count, Max, Sum
from django.db.models.functions import TruncHour

from monitoring.models import Sample, SampleAggregate
from reservations import service
from reservations.conflicts import Booked
from reservations.models import Reservation

DAY = 86_400
MAX_ROWS = 200


@dataclass(frozen=True)
class Usage:
    """Measured whole-machine CPU over a span; ``seconds`` 0 means unknown."""

    mean: float | None
    peak: float | None
    seconds: int


@dataclass(frozen=True)
class SlotRow:
    slot: Booked
    label: str
    used: Usage
    day_before: Usage | None = None
    week_before: Usage | None = None

    @property
    def verdict(self) -> str:
        """``short`` when use reached the reservation, ``idle`` when it stayed
        far below, ``ok`` in between, ``unknown`` without samples."""
        if self.used.peak is None:
            return "unknown"
        if self.used.peak >= self.slot.percent * 0.98:
            return "short"
        if self.used.mean is not None and self.used.mean < self.slot.percent * 0.25:
            return "idle"
        return "ok"


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def usage(start: int, end: int) -> Usage:
    """Mean and highest CPU % measured in ``[start, end)``."""
    raw = Sample.objects.filter(timestamp__gte=_utc(start), timestamp__lt=_utc(end))
    found = raw.aggregate(mean=Avg("cpu_usage"), peak=Max("cpu_usage"), n=Count("id"))
    if found["n"]:
        return Usage(found["mean"], found["peak"], found["n"])
    rows = SampleAggregate.objects.filter(
        timestamp__gte=_utc(start), timestamp__lt=_utc(end)
    )
    total = rows.aggregate(seconds=Sum("seconds"), peak=Max("cpu_max"))
    if not total["seconds"]:
        return Usage(None, None, 0)
    weighted = sum(r.cpu_usage * r.seconds for r in rows.only("cpu_usage", "seconds"))
    return Usage(weighted / total["seconds"], total["peak"], total["seconds"])


def _all_booked(start: int, end: int) -> list[Booked]:
    """Occurrences of every reservation, archived and disabled ones too."""
    found: list[Booked] = []
    for reservation in Reservation.objects.all():
        found.extend(service.booked_of(reservation, start, end))
    return sorted(found)


def past_rows(days: int, now: int | None = None) -> list[SlotRow]:
    """Slots of the last ``days`` days with what was used during them."""
    now = int(time.time()) if now is None else now
    rows = []
    for slot in _all_booked(now - days * DAY, now)[-MAX_ROWS:]:
        end = min(slot.end, now)
        label = service.span(slot.start, slot.end)
        rows.append(SlotRow(slot, label, usage(slot.start, end)))
    return list(reversed(rows))


def coming_rows(days: int, now: int | None = None) -> list[SlotRow]:
    """Coming slots with the use of the same hours a day and a week before."""
    now = int(time.time()) if now is None else now
    rows = []
    for slot in _all_booked(now, now + days * DAY)[:MAX_ROWS]:
        rows.append(
            SlotRow(
                slot,
                service.span(slot.start, slot.end),
                Usage(None, None, 0),
                usage(slot.start - DAY, slot.end - DAY),
                usage(slot.start - 7 * DAY, slot.end - 7 * DAY),
            )
        )
    return rows


def hourly(days: int, now: int | None = None) -> dict[str, list]:
    """Hourly mean and highest CPU % over the last ``days`` days, and the
    percent reserved in each hour, for the chart."""
    now = int(time.time()) if now is None else now
    start = now - days * DAY
    rows = (
        Sample.objects.filter(timestamp__gte=_utc(start), timestamp__lt=_utc(now))
        .annotate(hour=TruncHour("timestamp", tzinfo=UTC))
        .values("hour")
        .annotate(mean=Avg("cpu_usage"), peak=Max("cpu_usage"))
        .order_by("hour")
    )
    hours = {int(r["hour"].timestamp()): r for r in rows}
    booked = _all_booked(start, now)
    first = start - start % 3600
    series: dict[str, list] = {"start_ms": [], "mean": [], "peak": [], "reserved": []}
    for hour in range(first, now, 3600):
        row = hours.get(hour)
        series["start_ms"].append(hour * 1000)
        series["mean"].append(round(row["mean"], 2) if row else None)
        series["peak"].append(round(row["peak"], 2) if row else None)
        on = [b.percent for b in booked if b.start < hour + 3600 and b.end > hour]
        series["reserved"].append(max(on, default=None))
    return series
