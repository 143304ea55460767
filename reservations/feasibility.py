"""Does a reservation fit the rules, together with everything else?

Exact answers from the planner (:mod:`scheduling.planner`): the measured
history, the floor and the other reservations' profile, then
``check_interval`` for the new slots.

Occurrences that start within one window length of now share windows with
measured seconds, so each is checked by the planner built from the stored
samples. Windows around a later occurrence hold only planned seconds (the
floor and reservations); those are scanned in one pass over the plan's
pieces, which is exact and cheap, and the planner is asked only to explain
the first one that does not fit.

Seconds with no stored sample (the scheduler was not running) count as idle,
the planner's own convention; the scheduler fills real gaps from cumulative
counters when it runs.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reservations.recurrence import Occurrence
from scheduling.engine import limits_from_params
from scheduling.planner import (
    HourForecast,
    IntervalCheck,
    Limits,
    Planner,
    levels,
    quantize,
)

logger = logging.getLogger(__name__)

Interval = tuple[int, int, float]


@dataclass(frozen=True)
class Shortfall:
    """An occurrence the planner cannot honour, and the planner's verdict.

    ``series_fit`` is the largest percent at which every checked occurrence
    of the series fits (``None`` for a one-off slot, where the planner's
    ``check.max_percent`` says it).
    """

    occurrence: Occurrence
    percent: float
    check: IntervalCheck
    limits: Limits
    series_fit: float | None = None


def load_history(now: int, seconds: int) -> list[float]:
    """Stored whole-machine CPU % for ``[now - seconds, now)``, one per second.

    Seconds with no sample are 0 (idle), as the planner assumes.
    """
    from monitoring.models import Sample

    start = now - seconds
    values = [0.0] * seconds
    rows = Sample.objects.filter(
        timestamp__gte=datetime.fromtimestamp(start, UTC),
        timestamp__lt=datetime.fromtimestamp(now, UTC),
    ).values_list("timestamp", "cpu_usage")
    for timestamp, cpu in rows.iterator(chunk_size=5000):
        index = int(timestamp.timestamp()) - start
        if 0 <= index < seconds:
            values[index] = cpu
    return values


def build_planner(
    params: Mapping[str, Any],
    now: int,
    intervals: Iterable[Interval] = (),
    history: Sequence[float] | None = None,
) -> Planner:
    """A planner at second ``now`` with the stored history and a profile."""
    limits = limits_from_params(params)
    if history is None:
        history = load_history(now, max(limits.avg_window_s, limits.peak_window_s))
    planner = Planner(limits, now, history)
    planner.set_profile(list(intervals))
    return planner


def first_shortfall(
    planner: Planner,
    occurrences: Sequence[Occurrence],
    percent: float,
    others: Sequence[Interval],
) -> Shortfall | None:
    """The first of ``occurrences`` at ``percent`` that does not fit, if any.

    ``planner`` holds the history; its profile is replaced. ``others`` are
    the other reservations' honoured intervals. The planner's
    ``check_interval`` gives every verdict; occurrences more than a window
    length ahead are first screened by a scan of the plan, and reach the
    planner only when the scan finds a window over budget.
    """
    limits = planner.limits
    span = max(limits.avg_window_s, limits.peak_window_s)
    now = planner.now
    pending = [o for o in occurrences if o.end > now]
    plan = Plan(planner, [*others, *_own(pending, percent)])

    for i, occurrence in enumerate(pending):
        if occurrence.start >= now + span and not plan.over(occurrence):
            continue
        own = _own(pending[:i] + pending[i + 1 :], percent)
        planner.set_profile([*others, *own])
        # The largest fitting percent is only shown when refusing, and a
        # refusal computes it anyway: skip the search for slots that fit.
        check = planner.check_interval(
            occurrence.start, occurrence.end, percent, want_max=False
        )
        if check.ok:
            continue
        fit = (
            series_fit(planner, pending, percent, others) if len(pending) > 1 else None
        )
        return Shortfall(occurrence, percent, check, limits, fit)
    return None


def _own(occurrences: Iterable[Occurrence], percent: float) -> list[Interval]:
    return [(o.start, o.end, percent) for o in occurrences]


def series_fit(
    planner: Planner,
    occurrences: Sequence[Occurrence],
    percent: float,
    others: Sequence[Interval],
) -> float:
    """The largest percent (to 0.01) at which every occurrence fits."""

    def fits(candidate: float) -> bool:
        plan = Plan(planner, [*others, *_own(occurrences, candidate)])
        return not any(plan.over(o) for o in occurrences)

    low, high = 0, max(0, int(percent * 100) - 1)
    if not fits(0.0):
        return 0.0
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid / 100):
            low = mid
        else:
            high = mid - 1
    return low / 100


class Plan:
    """Window sums over the planner's history and a planned profile.

    Uses the planner's units and budgets: measured seconds as stored in its
    windows, planned seconds at the larger of the floor and the reserved sum
    (overlaps add up), each rounded up with :func:`quantize`.
    """

    def __init__(self, planner: Planner, intervals: Sequence[Interval]) -> None:
        limits = planner.limits
        self.limits = limits
        self.now = planner.now
        pieces = levels([i for i in intervals if i[1] > self.now], limits.floor)
        threshold = limits.peak_threshold
        self.avg = _Integral(pieces, limits.floor, quantize)
        self.peak = _Integral(pieces, limits.floor, lambda v: int(v >= threshold))
        self.avg_past = _prefix(quantize(u) for u in planner.avg.values())
        self.peak_past = _prefix(planner.peak.bits())

    def over(self, occurrence: Occurrence) -> bool:
        """Whether a window overlapping ``occurrence`` goes over a budget
        (always false for a slot that has ended)."""
        if occurrence.end <= self.now:
            return False
        limits = self.limits
        rules = (
            (self.avg, self.avg_past, limits.avg_window_s, limits.avg_budget_units),
            (
                self.peak,
                self.peak_past,
                limits.peak_window_s,
                limits.peak_budget_effective,
            ),
        )
        for planned, past, w, budget in rules:
            if self._worst(planned, past, w, occurrence) > budget:
                return True
        return False

    def _worst(
        self, planned: _Integral, past: list[int], w: int, occurrence: Occurrence
    ) -> int:
        now = self.now
        low = max(occurrence.start, now) - w + 1
        high = occurrence.end - 1
        at = self._at(planned, past)
        worst = planned.worst_between(max(low, now), high, w, at)
        if low < now:
            worst = max(
                worst, self._worst_past(planned, past, w, low, min(now, high + 1))
            )
        return worst

    def _worst_past(
        self, planned: _Integral, past: list[int], w: int, low: int, high: int
    ) -> int:
        """The largest sum of windows starting in ``[low, high)``, before now.

        Every past second is a breakpoint, so each start is evaluated; the
        right edge moves linearly within one plan piece, so each piece is one
        pass over the stored prefix sums.
        """
        now = self.now
        held = len(past) - 1
        origin = planned.at(now)
        cuts = sorted({low, high, *(x - w for x in planned.xs if low < x - w < high)})
        worst = -(1 << 62)
        for a, b in zip(cuts, cuts[1:], strict=False):
            i = bisect_right(planned.xs, a + w) - 1
            v = planned.vs[i] if i >= 0 else planned.base
            head = planned.at(a + w) - origin + past[held]
            first = held - (now - a)
            best = max(v * j - past[max(0, first + j)] for j in range(b - a))
            worst = max(worst, head + best)
        return worst

    def _at(self, planned: _Integral, past: list[int]):
        now = self.now
        origin = planned.at(now)
        held = len(past) - 1

        def at(x: int) -> int:
            if x >= now:
                return planned.at(x) - origin
            back = now - x
            if back > held:
                return -past[held]
            return past[held - back] - past[held]

        return at


def _prefix(values: Iterable[int]) -> list[int]:
    prefix = [0]
    for value in values:
        prefix.append(prefix[-1] + value)
    return prefix


class _Integral:
    """Sums of a piecewise-constant plan over any span, in O(log n)."""

    def __init__(self, pieces: Sequence[tuple[int, float]], base: float, value):
        self.xs = [x for x, _ in pieces]
        self.vs = [value(level) for _, level in pieces]
        self.base = value(base)
        self.acc = [0]
        for i in range(1, len(self.xs)):
            width = self.xs[i] - self.xs[i - 1]
            self.acc.append(self.acc[-1] + self.vs[i - 1] * width)

    def at(self, x: int) -> int:
        """The sum from the first piece up to second ``x`` (exclusive)."""
        if not self.xs or x < self.xs[0]:
            origin = self.xs[0] if self.xs else 0
            return self.base * (x - origin)
        i = bisect_right(self.xs, x) - 1
        return self.acc[i] + self.vs[i] * (x - self.xs[i])

    def worst_between(self, low: int, high: int, w: int, at) -> int:
        """The largest ``at(k + w) - at(k)`` for ``k`` in ``[low, high]``.

        A window sum is linear between breakpoints of the plan, so only the
        ends and the starts that put an edge on a breakpoint need checking.
        """
        if high < low:
            return -(1 << 62)
        starts = {low, high}
        for shift in (0, w):
            i = bisect_left(self.xs, low + shift)
            j = bisect_right(self.xs, high + shift)
            starts.update(x - shift for x in self.xs[i:j])
        return max(at(k + w) - at(k) for k in starts)


def forecast(
    planner: Planner, intervals: Sequence[Interval], hours: int
) -> list[HourForecast]:
    """The planner's hourly cap forecast with the given profile."""
    planner.set_profile(list(intervals))
    return planner.forecast(hours)


def budget_taken(limits: Limits, duration_s: int, percent: float) -> dict[str, float]:
    """What one slot takes: whole-machine CPU-seconds above the floor, the
    share of the average budget, and peak seconds."""
    above = max(0.0, percent - limits.floor) * duration_s / 100.0
    budget = limits.avg_window_s * limits.avg_limit_effective / 100.0
    peak_s = duration_s if percent >= limits.peak_threshold else 0
    return {
        "cpu_s": percent * duration_s / 100.0,
        "cpu_s_above_floor": above,
        "avg_budget_cpu_s": budget,
        "avg_budget_share": 100.0 * above / budget if budget > 0 else 0.0,
        "peak_s": peak_s,
        "peak_budget_s": limits.peak_budget_effective,
    }
