"""The preview shown before saving: the review plus the planner's forecast.

The forecast is the planner's hourly cap (:meth:`Planner.forecast`) when the
machine spends all it is allowed from now on, once with the other
reservations only and once with the new one too; the gap between the two
lines is what the reservation costs everything else.
"""

from __future__ import annotations

import math
import time
from typing import Any

from reservations import feasibility, service
from reservations.models import Reservation
from reservations.service import Draft

MIN_HOURS = 12
MAX_HOURS = 72


def build(
    draft: Draft,
    *,
    original: Reservation | None = None,
    hours: int | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """A JSON-ready preview; ``ok`` false means a save would be refused."""
    now = int(time.time()) if now is None else now
    report = service.review(draft, now=now, original=original)
    result: dict[str, Any] = {
        "ok": report.ok,
        "errors": report.errors(),
        "notices": report.notices,
        "budget": report.budget,
        "feasibility_checked": report.checked_feasibility,
        "occurrences": [_occurrence(o) for o in report.upcoming[:10]],
        "forecast": None,
    }
    if report.planner is not None:
        span = _hours(report, now) if hours is None else hours
        result["forecast"] = _forecast(report, draft, span)
    return result


def _hours(report: service.Report, now: int) -> int:
    """Enough hours to show the first slot and two hours after it."""
    if not report.upcoming:
        return MIN_HOURS
    until = (report.upcoming[0].end - now) / 3600 + 2
    return max(MIN_HOURS, min(MAX_HOURS, math.ceil(until)))


def _forecast(report: service.Report, draft: Draft, hours: int) -> dict[str, Any]:
    planner = report.planner
    assert planner is not None
    key = str(draft.id or "new")
    before = [(b.start, b.end, b.percent) for b in report.before]
    after = [(b.start, b.end, b.percent) for b in report.after]
    without = feasibility.forecast(planner, before, hours)
    with_it = feasibility.forecast(planner, after, hours)
    mine = [b for b in report.after if b.key == key]
    return {
        "start_ms": [h.start * 1000 for h in without],
        "without": [round(h.cap_mean, 2) for h in without],
        "with": [round(h.cap_mean, 2) for h in with_it],
        "reserved": [_reserved(mine, h.start) for h in without],
        "hours": hours,
    }


def _reserved(mine: list, hour_start: int) -> float:
    """The reservation's percent if it is on during the hour, else 0."""
    hour_end = hour_start + 3600
    on = [b.percent for b in mine if b.start < hour_end and b.end > hour_start]
    return max(on, default=0.0)


def _occurrence(occurrence: service.Occurrence) -> dict[str, Any]:
    return {
        "start": service.local(occurrence.start).isoformat(),
        "end": service.local(occurrence.end).isoformat(),
        "label": service.span(occurrence.start, occurrence.end),
        "note": occurrence.note,
    }
