"""Time for the scheduler loop: tick deadlines, seconds to record, clock steps.

The windows hold one slot per second, labelled with the UNIX second it
measured. Elapsed time always comes from the monotonic clock; the wall clock
only labels seconds. When the two disagree by more than
:data:`STEP_TOLERANCE_S` the wall clock was stepped (by an operator, NTP or
a resumed VM): the seconds that really passed are counted on the monotonic
clock and relabelled on the new wall clock, so a step back neither counts a
second twice nor a step forward drops or invents any.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

TICK_OFFSET_S = 0.02
"""Ticks land this long after the wall-clock boundary, so the second that
just ended is surely over when it is read."""

STEP_TOLERANCE_S = 1.0
"""A change of (wall - monotonic) larger than this is a clock step; smaller
changes are NTP slewing and scheduling jitter."""


class SystemClock:
    """The real clocks; tests pass an object with the same two methods."""

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()


def next_deadline(
    mono: float, wall: float, interval: float, min_gap: float = 0.0
) -> float:
    """Monotonic time of the next wall-clock tick, at least ``min_gap`` away.

    Ticks fall :data:`TICK_OFFSET_S` after each multiple of ``interval``
    seconds of wall time, so 1 Hz sampling stays on the second and does not
    drift however long each tick takes.
    """
    boundary = math.floor((wall - TICK_OFFSET_S) / interval + 1) * interval
    boundary += TICK_OFFSET_S
    while boundary - wall < min_gap:
        boundary += interval
    return mono + (boundary - wall)


@dataclass(frozen=True)
class Advance:
    """The seconds ``first..last`` (inclusive) to record at this tick."""

    first: int
    last: int
    step_s: float = 0.0

    @property
    def count(self) -> int:
        return max(0, self.last - self.first + 1)

    @property
    def stepped(self) -> bool:
        return self.step_s != 0.0


class Timeline:
    """Which seconds each tick completes, on a clock that may be stepped."""

    def __init__(self, last_ts: int, wall: float, mono: float) -> None:
        self.last_ts = last_ts
        self._offset = wall - mono

    def advance(self, wall: float, mono: float) -> Advance:
        """The seconds completed since the last call (none within one second)."""
        offset = wall - mono
        step = offset - self._offset
        self._offset = offset
        if abs(step) <= STEP_TOLERANCE_S:
            last = math.floor(wall) - 1
            advance = Advance(self.last_ts + 1, last)
            self.last_ts = max(self.last_ts, last)
            return advance

        # Count on the old labels what the monotonic clock says passed, then
        # give those seconds labels that end at the new wall-clock second.
        passed = math.floor(mono + offset - step) - 1 - self.last_ts
        last = math.floor(wall) - 1
        self.last_ts = last
        return Advance(last - max(passed, 0) + 1, last, step_s=step)


class History:
    """The last ``length`` seconds of raw CPU %, oldest first.

    Kept so the windows can be rebuilt in memory after a clock step or a
    parameter change without reading the database.
    """

    def __init__(self, length: int, values: Iterable[float] = ()) -> None:
        self.length = length
        self._ring = array("d", bytes(8 * length))
        self._pos = 0
        self._count = 0
        for value in values:
            self.add(value)

    def add(self, value: float) -> None:
        self._ring[self._pos] = value
        self._pos = (self._pos + 1) % self.length
        self._count = min(self._count + 1, self.length)

    def __len__(self) -> int:
        return self._count

    def values(self) -> list[float]:
        """The stored seconds, oldest first (only those really stored)."""
        ring = self._ring
        ordered = ring[self._pos :] + ring[: self._pos]
        return ordered[self.length - self._count :].tolist()
