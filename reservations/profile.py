"""The reserved-CPU profile the planner honours.

The scheduler calls :func:`future_profile` when the ``reservations``
revision moves (every save, delete, toggle and archive bumps it) and at least
once a minute, and hands the slots to ``Engine.set_profile`` as
``(start, end, percent)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpusched import config
from reservations.conflicts import Booked, Displacement, resolve
from reservations.service import booked_of, live_reservations


@dataclass(frozen=True)
class Slot:
    """One honoured occurrence: ``percent`` of the whole machine over the
    half-open UNIX-second interval ``[start, end)``."""

    start: int
    end: int
    percent: float
    reservation_id: str
    name: str
    priority: int

    def interval(self) -> tuple[int, int, float]:
        return (self.start, self.end, self.percent)


def honoured(
    start_ts: int, end_ts: int, allow_overlap: bool | None = None
) -> tuple[list[Booked], list[Displacement]]:
    """Occurrences of enabled, non-archived reservations overlapping
    ``[start_ts, end_ts)``: the honoured ones and the displaced ones.

    Occurrences up to two weeks beyond the range (twice the longest slot
    allowed) take part in displacement, so a slot just outside the range
    still displaces one inside it.
    """
    if allow_overlap is None:
        allow_overlap = bool(config.get("reservation.allow_overlap"))
    margin = 14 * 86_400
    booked: list[Booked] = []
    for reservation in live_reservations():
        booked.extend(booked_of(reservation, start_ts - margin, end_ts + margin))
    kept, displaced = resolve(booked, allow_overlap)
    inside = [b for b in kept if b.end > start_ts and b.start < end_ts]
    lost = [d for d in displaced if d.loser.end > start_ts and d.loser.start < end_ts]
    return inside, lost


def future_profile(start_ts: int, end_ts: int) -> list[Slot]:
    """Every honoured slot overlapping ``[start_ts, end_ts)``, by start.

    Empty while ``reservation.enabled`` is off: reservations are then kept
    but not honoured.
    """
    params = config.snapshot()
    if not params["reservation.enabled"]:
        return []
    kept, _ = honoured(start_ts, end_ts, bool(params["reservation.allow_overlap"]))
    return [Slot(b.start, b.end, b.percent, b.key, b.name, b.priority) for b in kept]


def active_at(ts: int) -> list[Slot]:
    """The slots honoured at second ``ts`` (for the live state and the log)."""
    return future_profile(ts, ts + 1)
