"""Ring buffers holding the last N seconds of whole-machine CPU use.

One slot per second, oldest overwritten first. Adding a sample and reading
the total are O(1); nothing here imports numpy or Django.

CPU % always means the whole machine (100 % is every core busy). Seconds
before the first sample count as idle (0 %): the caller passes stored
history, with gaps already filled, when it needs the past to count.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)


class AverageWindow:
    """The last ``length_s`` seconds of CPU %, with a running sum.

    The running sum is updated with one add and one subtract per sample, so
    rounding error could creep in over months. It cannot: every time the
    write position wraps around (once per ``length_s`` samples) the sum is
    recomputed exactly with :func:`math.fsum`, which costs O(1) amortized and
    bounds the drift to what one lap of additions can produce (far below
    1e-9 % of a window total).
    """

    def __init__(self, length_s: int, values: Iterable[float] = ()) -> None:
        if length_s < 1:
            raise ValueError(f"Window length must be at least 1 s, got {length_s!r}")
        self.length_s = length_s
        self._ring = array("d", bytes(8 * length_s))
        self._pos = 0
        self._count = 0
        self._sum = 0.0
        for value in values:
            self.add(value)

    def add(self, cpu_percent: float) -> None:
        """Store the next second's CPU %, dropping the oldest one."""
        ring = self._ring
        pos = self._pos
        self._sum += cpu_percent - ring[pos]
        ring[pos] = cpu_percent
        pos += 1

        if pos == self.length_s:
            pos = 0
            self._sum = math.fsum(ring)
        self._pos = pos

        if self._count < self.length_s:
            self._count += 1

    def total(self) -> float:
        """Sum of CPU % over the window, in percent-seconds."""
        return self._sum

    def count(self) -> int:
        """How many seconds were added, at most the window length."""
        return self._count

    def mean(self) -> float:
        """Mean CPU % over the full window length, as the average rule sees it.

        Seconds not sampled yet count as idle, so a fresh window reads low
        rather than pretending the machine was busy.
        """
        return self._sum / self.length_s

    def values(self) -> Iterator[float]:
        """The stored seconds, oldest first (unsampled seconds read as 0)."""
        ring = self._ring
        yield from ring[self._pos :]
        yield from ring[: self._pos]

    def recent(self, seconds: int) -> list[float]:
        """The last ``seconds`` values, oldest first (zeros if never sampled)."""
        seconds = max(0, min(seconds, self.length_s))
        values = list(self.values())
        return values[len(values) - seconds :]


class PeakWindow:
    """Count of seconds at or above ``threshold`` % in the last ``length_s``."""

    def __init__(
        self, length_s: int, threshold: float, values: Iterable[float] = ()
    ) -> None:
        if length_s < 1:
            raise ValueError(f"Window length must be at least 1 s, got {length_s!r}")
        self.length_s = length_s
        self.threshold = threshold
        self._ring = array("B", bytes(length_s))
        self._pos = 0
        self._count = 0
        for value in values:
            self.add(value)

    def add(self, cpu_percent: float) -> None:
        """Store whether the next second was a peak second."""
        self.add_bit(1 if cpu_percent >= self.threshold else 0)

    def add_bit(self, bit: int) -> None:
        """Store a second already classified as peak (1) or not (0)."""
        ring = self._ring
        pos = self._pos
        self._count += bit - ring[pos]
        ring[pos] = bit
        pos += 1
        self._pos = 0 if pos == self.length_s else pos

    def count(self) -> int:
        """Peak seconds in the window."""
        return self._count

    def oldest(self) -> int:
        """1 if the oldest second in the window was a peak second, else 0."""
        return self._ring[self._pos]

    def bits(self) -> Iterator[int]:
        """The stored seconds as 0/1, oldest first."""
        ring = self._ring
        yield from ring[self._pos :]
        yield from ring[: self._pos]
