"""Which reserved occurrences are honoured when slots overlap.

Pure logic on UTC instants (UNIX seconds, half-open intervals). When
overlaps are not allowed (``reservation.allow_overlap`` off), only one of a
set of overlapping occurrences is honoured: the one of highest priority, and
between equal priorities the reservation created first. The others are
*displaced*: skipped for that occurrence only, and honoured again when the
reservation that displaced them is moved, disabled or deleted. When overlaps
are allowed every occurrence is honoured and overlapping percents add up.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Booked:
    """One occurrence of one reservation.

    ``rank`` orders reservations for displacement: lower wins. It is
    ``(-priority, created order)``.
    """

    start: int
    end: int
    percent: float = field(compare=False)
    key: str = field(compare=False)
    name: str = field(compare=False)
    priority: int = field(compare=False)
    rank: tuple = field(compare=False, default=())
    note: str = field(compare=False, default="")

    def overlaps(self, other: Booked) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Displacement:
    """``loser`` is skipped because ``winner`` overlaps it."""

    loser: Booked
    winner: Booked


@dataclass(frozen=True)
class Peak:
    """The most of something at once: a count or a percent, and when."""

    value: float
    start: int
    end: int
    keys: tuple[str, ...]


def resolve(
    booked: list[Booked], allow_overlap: bool
) -> tuple[list[Booked], list[Displacement]]:
    """The honoured occurrences (sorted by start) and the displaced ones."""
    if allow_overlap:
        return sorted(booked), []

    accepted: list[Booked] = []
    displaced: list[Displacement] = []
    for item in sorted(booked, key=lambda b: (b.rank, b.start)):
        winner = _overlapping(accepted, item)
        if winner is None:
            insort(accepted, item)
        else:
            displaced.append(Displacement(item, winner))
    return accepted, displaced


def _overlapping(accepted: list[Booked], item: Booked) -> Booked | None:
    """An accepted occurrence overlapping ``item`` (accepted never overlap)."""
    i = bisect_left(accepted, item)
    for j in (i - 1, i):
        if 0 <= j < len(accepted) and accepted[j].overlaps(item):
            return accepted[j]
    return None


def most_concurrent(booked: list[Booked], involving: str | None = None) -> Peak:
    """The largest number of occurrences active at one instant (at which
    reservation ``involving`` is active, when given)."""
    return _sweep(booked, lambda item: 1.0, involving)


def most_reserved(booked: list[Booked], involving: str | None = None) -> Peak:
    """The largest sum of reserved percents at one instant (at which
    reservation ``involving`` is active, when given)."""
    return _sweep(booked, lambda item: item.percent, involving)


def _sweep(booked: list[Booked], weight, involving: str | None) -> Peak:
    events: list[tuple[int, int, Booked]] = []
    for item in booked:
        # Ends sort before starts at the same second: half-open intervals.
        events.append((item.start, 1, item))
        events.append((item.end, 0, item))
    events.sort(key=lambda e: (e[0], e[1]))

    active: dict[int, Booked] = {}
    level = 0.0
    watched = 0
    best = Peak(0.0, 0, 0, ())
    for i, (at, is_start, item) in enumerate(events):
        sign = 1 if is_start else -1
        if is_start:
            active[id(item)] = item
        else:
            active.pop(id(item), None)
        level += sign * weight(item)
        watched += sign * (item.key == involving)
        following = events[i + 1][0] if i + 1 < len(events) else at
        if involving is not None and not watched:
            continue
        if level > best.value + 1e-9 and following > at:
            keys = tuple(sorted({b.key for b in active.values()}))
            best = Peak(level, at, following, keys)
    return best
