"""The exact planner: the largest cap that breaks no window, now or later.

Time is absolute integer UNIX seconds. ``u[s]`` is measured use (past
seconds), ``f[s]`` the planned minimum of each future second (the larger of
the floor and the sum of reservations active then), ``W`` a window length
and ``B`` its budget. With prefix sums ``PU`` and ``PF`` the largest safe
cap at the current second ``t`` is::

    a_max(t) = B - (PU[t] - PF[t+1]) - max over k in (t-W, t] of (PF[k+W] - PU[k])

The last term is a sliding-window maximum kept in a monotonic deque: O(1)
amortized per second, rebuilt in O(W) only when the future profile changes.
The peak rule has the same shape with 0/1 values against the peak budget.
docs/planner.md derives the formula and documents the safety margin.

All sums are exact integers in planner units of 1e-4 percent-second
(:data:`SCALE`); measured use is rounded up into them, so the planner never
under-counts and its answers never drift.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, chain
from operator import sub

from scheduling.windows import AverageWindow, PeakWindow

logger = logging.getLogger(__name__)

SCALE = 10_000
"""Planner units per percent-second: caps resolve to 1e-4 %."""

PEAK_GAP = 0.5
"""Percentage points below the peak threshold where the cap stays when the
peak rule forbids a peak second; wide enough that per-second measurement
jitter does not read as a peak second."""

NEVER = 1 << 62
"""A time later than any real UNIX second: "no further change"."""

Interval = tuple[int, int, float]


def quantize(cpu_percent: float) -> int:
    """CPU % for one second as planner units, rounded up.

    A value within 1e-6 units above a whole unit rounds down instead, so a cap
    the planner handed out (an exact number of units, as a float) is counted
    back as exactly that many units.
    """
    return int(cpu_percent * SCALE + 0.999999)


@dataclass(frozen=True)
class Limits:
    """The rules and the guarantees the planner keeps, in plain numbers."""

    avg_window_s: int = 43_200
    avg_limit: float = 30.0
    peak_window_s: int = 86_400
    peak_threshold: float = 95.0
    peak_budget_s: int = 600
    floor: float = 5.0
    safety_margin: float = 5.0

    @property
    def keep(self) -> float:
        """Share of each budget the planner may spend (the margin is kept)."""
        return 1.0 - self.safety_margin / 100.0

    @property
    def avg_limit_effective(self) -> float:
        """The mean CPU % the planner plans against."""
        return self.avg_limit * self.keep

    @property
    def avg_budget_units(self) -> int:
        """Average budget ``W x limit x keep`` in planner units, rounded down."""
        return int(self.avg_window_s * self.avg_limit_effective * SCALE + 1e-6)

    @property
    def peak_budget_effective(self) -> int:
        """Peak seconds the planner may spend per peak window, rounded down."""
        return int(self.peak_budget_s * self.keep + 1e-9)


@dataclass(frozen=True)
class IntervalCheck:
    """Whether an extra reserved interval fits, and if not, where it breaks."""

    ok: bool
    rule: str | None
    window_start: int | None
    window_end: int | None
    shortfall_cpu_s: float
    shortfall_percent: float
    peak_excess_s: int
    max_percent: float
    reason: str


@dataclass(frozen=True)
class HourForecast:
    """The cap the planner allows over one future hour, spending all of it."""

    start: int
    cap_mean: float
    cap_min: float


class _Profile:
    """A piecewise-constant function of absolute seconds.

    ``points[i]`` starts a piece of value ``values[i]`` lasting until
    ``points[i + 1]``; before the first point and from the last point on the
    value is ``base``.
    """

    __slots__ = ("base", "points", "values")

    def __init__(self, base: int, pieces: Sequence[tuple[int, int]] = ()) -> None:
        self.base = base
        self.points = [x for x, _ in pieces]
        self.values = [v for _, v in pieces]

    def at(self, x: int) -> tuple[int, int]:
        """The value at second ``x`` and the next second where it changes."""
        i = bisect_right(self.points, x) - 1
        value = self.values[i] if i >= 0 else self.base
        following = self.points[i + 1] if i + 1 < len(self.points) else NEVER
        return value, following

    def last_change(self) -> int | None:
        """The last second at which the value changes, if any."""
        return self.points[-1] if self.points else None

    def series(self, start: int, end: int) -> list[int]:
        """The value of every second in ``[start, end)``."""
        out: list[int] = []
        x = start
        while x < end:
            value, following = self.at(x)
            stop = min(following, end)
            out.extend([value] * (stop - x))
            x = stop
        return out


def _levels(intervals: Iterable[Interval], floor: float) -> list[tuple[int, float]]:
    """Reserved CPU % per piece of time, never below the floor.

    Overlapping reservations add up. The result is ``(start, level)`` pieces;
    the last piece returns to the floor.
    """
    events: dict[int, float] = {}
    for start, end, percent in intervals:
        if end <= start or percent <= 0:
            continue
        events[start] = events.get(start, 0.0) + percent
        events[end] = events.get(end, 0.0) - percent

    pieces: list[tuple[int, float]] = []
    reserved = 0.0
    for x in sorted(events):
        reserved += events[x]
        level = max(floor, reserved if reserved > 1e-9 else 0.0)
        if not pieces or pieces[-1][1] != level:
            pieces.append((x, level))
    return pieces


def _profile(pieces: Sequence[tuple[int, float]], base: float, value) -> _Profile:
    """Map levels through ``value`` and merge neighbours that became equal."""
    mapped: list[tuple[int, int]] = []
    base_value = value(base)
    for x, level in pieces:
        v = value(level)
        previous = mapped[-1][1] if mapped else base_value
        if v != previous:
            mapped.append((x, v))
    return _Profile(base_value, mapped)


class _Rule:
    """One sliding-window rule: ``sum over any W seconds <= budget``.

    Holds ``PU[t]`` (``pu``), ``PF[t+1]`` (``pf_now``), ``PF[t+W]``
    (``pf_head``) and the monotonic deque of ``g(k) = PF[k+W] - PU[k]`` for
    ``k`` in ``(t-W, t]``, decreasing from the front. ``PU`` and ``PF`` have
    independent origins: only differences within each are ever used.
    """

    __slots__ = (
        "w",
        "budget",
        "profile",
        "t",
        "pu",
        "pf_now",
        "pf_head",
        "now_val",
        "now_next",
        "head_val",
        "head_next",
        "keys",
        "starts",
    )

    def __init__(self, window_s: int, budget: int, profile: _Profile) -> None:
        self.w = window_s
        self.budget = budget
        self.profile = profile

    def reset(self, t: int, past: Sequence[int]) -> None:
        """Rebuild for current second ``t`` from the units of seconds before it.

        ``past`` ends at second ``t - 1``; seconds older than it count as 0.
        Costs O(W).
        """
        w = self.w
        past = list(past[-(w - 1) :]) if w > 1 else []
        past = [0] * (w - 1 - len(past)) + past
        future = self.profile.series(t + 1, t + w)

        self.t = t
        self.keys = deque()
        self.starts = deque()
        pu = 0
        pf = 0
        for i in range(w):
            # k = t - w + 1 + i; PU[k] is pu, PF[k + w] is pf.
            self._push_key(t - w + 1 + i, pf - pu)
            if i < w - 1:
                pu += past[i]
                pf += future[i]
        self.pu = pu
        self.pf_now = 0
        self.pf_head = pf
        self.now_val, self.now_next = self.profile.at(t)
        self.head_val, self.head_next = self.profile.at(t + w - 1)

    def _push_key(self, k: int, g: int) -> None:
        keys = self.keys
        while keys and keys[-1] <= g:
            keys.pop()
            self.starts.pop()
        keys.append(g)
        self.starts.append(k)

    def push(self, units: int) -> None:
        """Record the current second's use and move to the next second."""
        t = self.t + 1
        self.t = t
        pu = self.pu + units
        self.pu = pu

        if t >= self.now_next:
            self.now_val, self.now_next = self.profile.at(t)
        self.pf_now += self.now_val
        x = t + self.w - 1
        if x >= self.head_next:
            self.head_val, self.head_next = self.profile.at(x)
        pf_head = self.pf_head + self.head_val
        self.pf_head = pf_head

        g = pf_head - pu
        keys = self.keys
        starts = self.starts
        while keys and keys[-1] <= g:
            keys.pop()
            starts.pop()
        keys.append(g)
        starts.append(t)
        if starts[0] <= t - self.w:
            starts.popleft()
            keys.popleft()

    def slack(self) -> int:
        """``a_max`` for the current second, in units (negative: already over)."""
        return self.budget - self.pu + self.pf_now - self.keys[0]

    def copy(self) -> _Rule:
        clone = _Rule(self.w, self.budget, self.profile)
        for name in _Rule.__slots__[3:]:
            setattr(clone, name, getattr(self, name))
        clone.keys = deque(self.keys)
        clone.starts = deque(self.starts)
        return clone


class _FlatPeak:
    """Projection of the peak rule when no future second is a peak second.

    Offers the part of the :class:`_Rule` interface that projections use.
    Old seconds are read lazily from a copy of the ring, so starting a
    projection costs one memory copy, not a pass in Python.
    """

    __slots__ = ("old", "pending", "head", "count", "budget", "now_val")

    def __init__(self, window: PeakWindow, budget: int) -> None:
        ring = window._ring
        self.old = chain(ring[window._pos :], ring[: window._pos])
        self.pending: deque[int] = deque()
        self.head = next(self.old)
        self.count = window.count()
        self.budget = budget
        self.now_val = 0

    def push(self, bit: int) -> None:
        self.pending.append(bit)
        self.count += bit - self.head
        self.head = next(self.old, None)
        if self.head is None:
            self.head = self.pending.popleft()

    def slack(self) -> int:
        return self.budget - self.count + self.head


class Planner:
    """Windows plus the exact safe cap for the current second.

    ``now`` is the second being decided; :meth:`record` stores its measured
    use and moves on to the next one.
    """

    def __init__(self, limits: Limits, now: int, history: Iterable[float] = ()) -> None:
        self.limits = limits
        history = list(history)[-max(limits.avg_window_s, limits.peak_window_s) :]
        self.avg = AverageWindow(limits.avg_window_s, history[-limits.avg_window_s :])
        self.peak = PeakWindow(
            limits.peak_window_s,
            limits.peak_threshold,
            history[-limits.peak_window_s :],
        )
        self._now = now
        self._avg_budget = limits.avg_budget_units
        self._peak_budget = limits.peak_budget_effective
        self._threshold = limits.peak_threshold
        self._intervals: list[Interval] = []
        self._budget_percent_s = limits.avg_window_s * limits.avg_limit_effective
        budget = self._budget_percent_s
        self._per_budget = 100.0 / budget if budget > 0 else 0.0
        self._rebuild()

    @property
    def now(self) -> int:
        """The second the next :meth:`bound` is for."""
        return self._now

    def _rebuild(self) -> None:
        limits = self.limits
        pieces = _levels(self._intervals, limits.floor)
        self._levels = _profile(pieces, limits.floor, lambda level: round(level * 1e6))
        avg_profile = _profile(pieces, limits.floor, quantize)
        peak_profile = _profile(
            pieces, limits.floor, lambda level: int(level >= self._threshold)
        )

        self._avg_rule = _Rule(limits.avg_window_s, self._avg_budget, avg_profile)
        past = [quantize(u) for u in self.avg.values()]
        self._avg_rule.reset(self._now, past)

        # Without reserved peak seconds the peak slack is read straight from
        # the peak window, which saves a deque update every second.
        self._peak_rule: _Rule | None = None
        if peak_profile.points or peak_profile.base:
            rule = _Rule(limits.peak_window_s, self._peak_budget, peak_profile)
            rule.reset(self._now, list(self.peak.bits()))
            self._peak_rule = rule
        self._floor_val, self._floor_next = self._levels.at(self._now)

    def set_profile(self, intervals: Iterable[Interval]) -> None:
        """Replace the reserved intervals ``(start_ts, end_ts, percent)``.

        Intervals are half-open, in absolute seconds; overlapping ones add up.
        Rebuilds both rules in O(W).
        """
        now = self._now
        self._intervals = [
            (int(s), int(e), float(p)) for s, e, p in intervals if e > now
        ]
        self._rebuild()
        logger.debug("Profile set: %d reserved intervals", len(self._intervals))

    def record(self, cpu_percent: float) -> None:
        """Store the measured CPU % of second :attr:`now` and advance by one."""
        u = cpu_percent if cpu_percent > 0.0 else 0.0
        self.avg.add(u)
        bit = 1 if u >= self._threshold else 0
        self.peak.add_bit(bit)
        # quantize(u), inlined: this runs once per second of every replay.
        self._avg_rule.push(int(u * SCALE + 0.999999))
        if self._peak_rule is not None:
            self._peak_rule.push(bit)
        now = self._now + 1
        self._now = now
        if now >= self._floor_next:
            self._floor_val, self._floor_next = self._levels.at(now)

    def bound(self) -> float:
        """The largest cap (CPU %) for second :attr:`now` that breaks no rule.

        Between 0 and 100. Just below the peak threshold when the peak rule
        has no second left to give.
        """
        a = self._avg_rule.slack() / SCALE
        if a >= self._threshold and self.peak_slack() < 1:
            a = self._threshold - PEAK_GAP
        if a > 100.0:
            return 100.0
        return a if a > 0.0 else 0.0

    def inputs(self) -> tuple[float, float, float]:
        """``(bound, remaining average quota %, floor now)`` for the policy."""
        return self.bound(), self.avg_remaining_percent(), self._floor_val / 1e6

    def peak_slack(self) -> int:
        """Peak seconds the current second may still add (below 1: none)."""
        if self._peak_rule is not None:
            return self._peak_rule.slack()
        peak = self.peak
        # The oldest stored second leaves every window holding this one.
        return self._peak_budget - peak._count + peak._ring[peak._pos]

    def peak_allowed(self) -> bool:
        """Whether second :attr:`now` may be a peak second."""
        return self.peak_slack() >= 1

    def floor_now(self) -> float:
        """The guaranteed minimum of second :attr:`now` (floor or reservations)."""
        return self._floor_val / 1e6

    # Live figures ---------------------------------------------------------

    def avg_mean(self) -> float:
        """Mean CPU % over the average window, unsampled seconds as idle."""
        return self.avg.mean()

    def avg_budget_cpu_s(self) -> float:
        """The average window's budget, in whole-machine seconds."""
        return self.limits.avg_window_s * self.limits.avg_limit_effective / 100.0

    def avg_used_cpu_s(self) -> float:
        """Whole-machine seconds used in the average window."""
        return self.avg.total() / 100.0

    def avg_used_percent(self) -> float:
        """Budget used by the last W seconds, as a percent of the budget."""
        return 100.0 - self.avg_remaining_percent()

    def avg_remaining_cpu_s(self) -> float:
        """Budget left in the average window (negative when over)."""
        return self.avg_budget_cpu_s() - self.avg_used_cpu_s()

    def avg_remaining_percent(self) -> float:
        """Budget left as a percent of the whole budget (100: window empty)."""
        return (self._budget_percent_s - self.avg._sum) * self._per_budget

    def peak_used_s(self) -> int:
        """Peak seconds in the peak window."""
        return self.peak.count()

    def peak_remaining_s(self) -> int:
        """Peak seconds the planner may still spend (negative when over)."""
        return self._peak_budget - self.peak.count()

    # Questions ------------------------------------------------------------

    def run_time_at(
        self, level_percent: float, horizon_s: int = 7 * 86_400
    ) -> int | None:
        """Seconds the machine can run at ``level_percent`` from now on.

        Every second of the run uses the level (or the reservation then, if
        higher), every second after it only its guaranteed minimum. Each
        second of the run must fit the windows holding it; a second below the
        peak threshold never counts against the peak rule.
        ``None``
        means the level is sustainable forever; a run that is still safe after
        ``horizon_s`` seconds, but not yet provably forever, reports
        ``horizon_s``.
        """
        avg = self._avg_rule.copy()
        peak = self._peak_projection()
        level = quantize(level_percent)
        level_bit = int(level_percent >= self._threshold)
        settled = self._settled_after()
        stop = min(settled, self._now + horizon_s)

        for s in range(self._now, stop):
            use = level if level > avg.now_val else avg.now_val
            bit = level_bit or peak.now_val
            if avg.slack() < use or (bit and peak.slack() < 1):
                return s - self._now
            avg.push(use)
            peak.push(bit)
        return None if stop == settled else horizon_s

    def _peak_projection(self) -> _Rule | _FlatPeak:
        """A throwaway copy of the peak rule's state to project forward."""
        if self._peak_rule is not None:
            return self._peak_rule.copy()
        return _FlatPeak(self.peak, self._peak_budget)

    def _settled_after(self) -> int:
        """A second after which every window looks the same forever."""
        last = max(self._levels.last_change() or 0, self._now)
        return last + max(self.limits.avg_window_s, self.limits.peak_window_s) + 1

    def forecast(self, hours: int) -> list[HourForecast]:
        """The cap for each of the next ``hours`` hours, spending all of it.

        Assumes the machine uses its whole cap every second from now on (the
        most pessimistic use), so later hours show what is left after that.
        """
        avg = self._avg_rule.copy()
        peak = self._peak_projection()
        out: list[HourForecast] = []
        for hour in range(hours):
            caps = [self._project_second(avg, peak) for _ in range(3600)]
            start = self._now + 3600 * hour
            out.append(HourForecast(start, sum(caps) / len(caps), min(caps)))
        return out

    def _project_second(self, avg: _Rule, peak: _Rule) -> float:
        """Spend the whole bound for one projected second; return the bound."""
        cap = avg.slack() / SCALE
        if cap >= self._threshold and peak.slack() < 1:
            cap = self._threshold - PEAK_GAP
        cap = min(max(cap, 0.0), 100.0)
        avg.push(quantize(cap))
        peak.push(int(cap >= self._threshold))
        return cap

    def check_interval(self, start: int, end: int, percent: float) -> IntervalCheck:
        """Whether reserving ``percent`` over ``[start, end)`` still fits.

        Only windows that overlap the new interval are examined. On failure
        the result names the rule and the worst window, how far over it goes
        (whole-machine seconds and percentage points of the window mean, or
        peak seconds), and the largest percent that would fit.
        """
        start = max(int(start), self._now)
        end = int(end)
        if end <= start:
            return IntervalCheck(True, None, None, None, 0.0, 0.0, 0, 100.0, "")

        avg_excess, avg_k = self._avg_excess(start, end, percent)
        peak_excess, peak_k = self._peak_excess(start, end, percent)
        fits = self._largest_fit(start, end)
        if avg_excess <= 0 and peak_excess <= 0:
            return IntervalCheck(True, None, None, None, 0.0, 0.0, 0, fits, "fits")
        if avg_excess > 0:
            return self._avg_failure(avg_excess, avg_k, peak_excess, fits)
        return self._peak_failure(peak_excess, peak_k, fits)

    def _avg_failure(
        self, excess: int, k: int, peak_excess: int, fits: float
    ) -> IntervalCheck:
        w = self.limits.avg_window_s
        cpu_s = excess / SCALE / 100.0
        points = excess / SCALE / w
        reason = (
            f"average window {_iso(k)} to {_iso(k + w)} would be over its budget by "
            f"{cpu_s:.1f} CPU-s ({points:.2f} percentage points); "
            f"at most {fits:g} % fits"
        )
        return IntervalCheck(
            False, "average", k, k + w, cpu_s, points, max(0, peak_excess), fits, reason
        )

    def _peak_failure(self, excess: int, k: int, fits: float) -> IntervalCheck:
        w = self.limits.peak_window_s
        reason = (
            f"peak window {_iso(k)} to {_iso(k + w)} would need {excess} peak "
            "seconds more than "
            f"its budget; at most {fits:g} % fits"
        )
        return IntervalCheck(False, "peak", k, k + w, 0.0, 0.0, excess, fits, reason)

    def _with(self, start: int, end: int, percent: float) -> list[tuple[int, float]]:
        return _levels([*self._intervals, (start, end, percent)], self.limits.floor)

    def _avg_excess(
        self, start: int, end: int, percent: float, past: list[int] | None = None
    ) -> tuple[int, int]:
        """Worst excess (units) over average windows overlapping the interval."""
        pieces = self._with(start, end, percent)
        profile = _profile(pieces, self.limits.floor, quantize)
        w = self.limits.avg_window_s
        first = max(self._now - w + 1, start - w + 1)
        if past is None:
            past = self._past_units(start)
        return _worst_window(past, profile, first, self._now, end, w, self._avg_budget)

    def _peak_excess(
        self, start: int, end: int, percent: float, past: list[int] | None = None
    ) -> tuple[int, int]:
        """Worst excess (seconds) over peak windows overlapping the interval."""
        pieces = self._with(start, end, percent)
        threshold = self._threshold
        profile = _profile(
            pieces, self.limits.floor, lambda level: int(level >= threshold)
        )
        w = self.limits.peak_window_s
        first = max(self._now - w + 1, start - w + 1)
        if past is None:
            past = self._past_bits(start)
        return _worst_window(past, profile, first, self._now, end, w, self._peak_budget)

    def _largest_fit(self, start: int, end: int) -> float:
        """The largest percent (to 0.01) that fits over ``[start, end)``.

        Bisection on the percent. The past of each rule is read once, and the
        peak rule is only re-examined for percents that lift some second of
        the interval to the threshold; below that its answer cannot change.
        """
        avg_past = self._past_units(start)
        peak_past = self._past_bits(start)
        top = max(self._levels.series(start, end)) / 1e6
        base_peak_ok = self._peak_excess(start, end, 0.0, peak_past)[0] <= 0

        def fits(percent: float) -> bool:
            if self._avg_excess(start, end, percent, avg_past)[0] > 0:
                return False
            if top + percent < self._threshold:
                return base_peak_ok
            return self._peak_excess(start, end, percent, peak_past)[0] <= 0

        low, high = 0, 10_000
        if not fits(0.0):
            return 0.0
        while low < high:
            mid = (low + high + 1) // 2
            if fits(mid / 100):
                low = mid
            else:
                high = mid - 1
        return low / 100

    def _past_units(self, start: int) -> list[int]:
        """Measured units of the past seconds in windows reaching ``start``."""
        w = self.limits.avg_window_s
        first = max(self._now - w + 1, start - w + 1)
        return [quantize(u) for u in self.avg.recent(self._now - first)]

    def _past_bits(self, start: int) -> list[int]:
        """Peak bits of the past seconds in windows reaching ``start``."""
        w = self.limits.peak_window_s
        first = max(self._now - w + 1, start - w + 1)
        if self._now <= first:
            return []
        bits = list(self.peak.bits())
        return bits[len(bits) - (self._now - first) :]


def _iso(ts: int) -> str:
    """A UNIX second as ISO-8601 UTC, for messages."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _worst_window(
    past: list[int],
    profile: _Profile,
    first: int,
    now: int,
    end: int,
    w: int,
    budget: int,
) -> tuple[int, int]:
    """Largest ``window sum - budget`` over windows starting in ``[first, end)``.

    ``past`` holds the seconds ``[first, now)``; later seconds take their
    planned minimum from ``profile``. Returns the excess and the start of
    the worst window.
    """
    series = past + profile.series(max(first, now), end + w - 1)
    prefix = list(accumulate(series, initial=0))
    sums = list(map(sub, prefix[w:], prefix[:-w]))
    worst = max(sums)
    return worst - budget, first + sums.index(worst)
