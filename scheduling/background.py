"""A conservative estimate of the CPU used outside the managed group.

The planner promises every future second only its planned minimum. What runs
outside the managed group is spent whatever the cap says, so the engine plans
each future second at no less than this estimate
(:meth:`scheduling.engine.Engine.set_background`).

The estimate is the largest per-minute mean over the last
:data:`SPAN_MINUTES` whole minutes and the current one. Why this figure:

- a mean per minute smooths the second-to-second jitter of ``/proc/stat``,
  so one busy second of a cron job does not make the planner hold back
  budget for the next quarter of an hour;
- the maximum over a quarter of an hour keeps a background that comes and
  goes (a backup running every few minutes) at its busy level instead of its
  average, which would under-plan every busy stretch;
- the current minute counts as its sum over the whole minute (seconds still
  to come as idle): a lower bound of its final mean that rises within
  seconds of a step up, yet a single busy second moves it by at most 1/60.

It costs O(1) per second (the maximum of the closed minutes is recomputed
only when a minute closes, over at most :data:`SPAN_MINUTES` values). The
service and the simulator feed it the same way: once per completed second,
with the second's whole-machine use outside the group.
"""

from __future__ import annotations

from collections import deque

MINUTE_S = 60
"""Seconds averaged into one figure."""

SPAN_MINUTES = 15
"""Closed minutes whose means the estimate remembers: long enough to span
the gaps of a background that comes back every few minutes, short enough
that a background that stopped frees its share within a quarter of an hour
(plus the engine's own wait before lowering the plan)."""


class BackgroundEstimate:
    """Largest per-minute mean of outside use over the last quarter-hour."""

    __slots__ = ("_minute", "_sum", "_count", "_closed", "_closed_max")

    def __init__(self) -> None:
        self._minute: int | None = None
        self._sum = 0.0
        self._count = 0
        self._closed: deque[tuple[int, float]] = deque()
        self._closed_max = 0.0

    def add(self, ts: int, percent: float | None) -> float:
        """Count second ``ts`` at ``percent`` outside use; the new estimate.

        ``None`` (outside use unknown this second) is skipped. Seconds must
        not go back in time; a gap simply leaves its minutes out.
        """
        if percent is None:
            return self.value
        minute = ts // MINUTE_S
        if minute != self._minute:
            self._close(minute)
        self._sum += percent if percent > 0.0 else 0.0
        self._count += 1
        return self.value

    @property
    def value(self) -> float:
        """The estimate (whole-machine CPU %); 0 before the first second."""
        partial = self._sum / MINUTE_S
        return partial if partial > self._closed_max else self._closed_max

    def _close(self, minute: int) -> None:
        """Store the minute in progress and start ``minute``."""
        closed = self._closed
        if self._count:
            closed.append((self._minute, self._sum / self._count))
        while closed and closed[0][0] < minute - SPAN_MINUTES:
            closed.popleft()
        self._closed_max = max((mean for _, mean in closed), default=0.0)
        self._minute = minute
        self._sum = 0.0
        self._count = 0
