"""The exact planner: the largest cap that breaks no window, now or later.

Time is absolute integer UNIX seconds. ``u[s]`` is measured use (past
seconds), ``f[s]`` the planned minimum of each future second (the largest of
the floor, the use expected outside the managed group and the sum of
reservations active then), ``W`` a window length
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
import math
from bisect import bisect_left, bisect_right
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
    max_percent: float | None
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


def levels(intervals: Iterable[Interval], floor: float) -> list[tuple[int, float]]:
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

    def __init__(
        self,
        limits: Limits,
        now: int,
        history: Iterable[float] = (),
        background: float = 0.0,
    ) -> None:
        self.limits = limits
        self._background = max(0.0, float(background))
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

    @property
    def background(self) -> float:
        """Outside use (CPU %) every future second is planned to need at least."""
        return self._background

    @property
    def plan_floor(self) -> float:
        """The least any future second is planned at: floor or background."""
        return max(self.limits.floor, self._background)

    def _rebuild(self) -> None:
        limits = self.limits
        # The guaranteed minimum (what the policy raises the cap to) comes
        # from the floor and reservations only; the plan of future seconds
        # also counts the background, which is spent whatever the cap says.
        guaranteed = levels(self._intervals, limits.floor)
        self._levels = _profile(
            guaranteed, limits.floor, lambda level: round(level * 1e6)
        )
        floor = self.plan_floor
        pieces = levels(self._intervals, floor)
        avg_profile = _profile(pieces, floor, quantize)
        peak_profile = _profile(
            pieces, floor, lambda level: int(level >= self._threshold)
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

    def set_background(self, percent: float) -> bool:
        """Plan every future second at no less than ``percent`` (outside use).

        Rebuilds both rules in O(W) when the plan changes; returns whether it
        did. :meth:`Engine.set_background` decides when a new figure is worth
        that.
        """
        before = self.plan_floor
        self._background = max(0.0, float(percent))
        if self.plan_floor == before:
            return False
        self._rebuild()
        logger.debug("Background planned at %.2f %%", self._background)
        return True

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

    # Interval checks ------------------------------------------------------

    # Prefix sums of the stored seconds, kept for the second they were read
    # at: several checks against one planner state read the past only once.
    _prefix_at: int | None = None
    _prefix: dict[str, list[int]]

    def check_interval(
        self, start: int, end: int, percent: float, *, want_max: bool = True
    ) -> IntervalCheck:
        """Whether reserving ``percent`` over ``[start, end)`` still fits.

        Only windows that overlap the new interval are examined. On failure
        the result names the rule and the worst window, how far over it goes
        (whole-machine seconds and percentage points of the window mean, or
        peak seconds), and the largest percent that would fit. When the
        interval fits, ``max_percent`` is that largest percent too, or
        ``None`` with ``want_max=False``, which skips the search (a yes or
        no is all a form needs until it refuses).
        """
        start = max(int(start), self._now)
        end = int(end)
        if end <= start:
            return IntervalCheck(True, None, None, None, 0.0, 0.0, 0, 100.0, "")

        avg, peak = self._scans(start, end)
        avg_excess, avg_k = avg.excess(percent)
        peak_excess, peak_k = peak.excess(percent)
        if avg_excess <= 0 and peak_excess <= 0:
            fits = self._largest_fit(start, end, avg, peak) if want_max else None
            return IntervalCheck(True, None, None, None, 0.0, 0.0, 0, fits, "fits")

        fits = self._largest_fit(start, end, avg, peak)
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
        return levels([*self._intervals, (start, end, percent)], self.plan_floor)

    def _scans(self, start: int, end: int) -> tuple[_Scan, _Scan]:
        """The average and peak windows overlapping ``[start, end)``."""
        floor = self.plan_floor
        threshold = self._threshold

        def avg_profile(percent: float) -> _Profile:
            return _profile(self._with(start, end, percent), floor, quantize)

        def peak_profile(percent: float) -> _Profile:
            pieces = self._with(start, end, percent)
            return _profile(pieces, floor, lambda level: int(level >= threshold))

        limits = self.limits
        avg = _Scan(
            limits.avg_window_s, self._avg_budget, start, end, self._now, avg_profile
        )
        peak = _Scan(
            limits.peak_window_s, self._peak_budget, start, end, self._now, peak_profile
        )
        if avg.first < self._now:
            avg.past = self._past_prefix("avg")
        if peak.first < self._now:
            peak.past = self._past_prefix("peak")
        return avg, peak

    def _largest_fit(self, start: int, end: int, avg: _Scan, peak: _Scan) -> float:
        """The largest percent (to 0.01) that fits over ``[start, end)``.

        Bisection on the percent. Each rule remembers the window sums of every
        plan it has seen, so the peak rule, whose plan changes only when a
        percent lifts some second of the interval to the threshold, is
        scanned once or twice; below the threshold its answer cannot change.
        """
        top = _highest(self._levels, start, end) / 1e6
        base_peak_ok = peak.excess(0.0)[0] <= 0

        def fits(percent: float) -> bool:
            if avg.excess(percent)[0] > 0:
                return False
            if top + percent < self._threshold:
                return base_peak_ok
            return peak.excess(percent)[0] <= 0

        if not fits(0.0):
            return 0.0

        # The largest fitting hundredth of a percent, found between a known
        # fit (low) and a known misfit (high). Probes start at an estimate
        # from the worst window's overlap with the interval and fall back to
        # halving, so the answer is the bisection's, in fewer scans.
        low, high = 0, 10_001
        # A second turns into a peak second once its reservations plus the
        # percent reach the threshold, whatever the floor.
        reserved = _profile(levels(self._intervals, 0.0), 0.0, _micro)
        reserved_top = _highest(reserved, start, end) / 1e6
        guess = self._estimate(start, end, avg, reserved_top, 100.0)
        confirming = False
        while high - low > 1:
            guessed = guess is not None and low < guess < high
            probe = guess if guessed else (low + high) // 2
            if fits(probe / 100):
                # An estimate that fits is most likely the answer: one step
                # up confirms it; otherwise keep halving.
                confirming = guessed and not confirming
                low, guess = probe, probe + 1 if confirming else None
            else:
                confirming = False
                high = probe
                guess = self._estimate(start, end, avg, reserved_top, probe / 100)
        return low / 100

    def _estimate(
        self, start: int, end: int, avg: _Scan, top: float, percent: float
    ) -> int | None:
        """A guess (in hundredths) at the largest percent below ``percent``
        that fits, from how far the worst window goes over its budget."""
        excess, k = avg.excess(percent)
        if excess > 0:
            overlap = min(k + avg.w, end) - max(k, start)
            lower = percent - excess / overlap / SCALE
            return math.floor(lower * 100) if overlap > 0 else None
        if top + percent >= self._threshold:
            return math.ceil((self._threshold - top) * 100) - 1
        return None

    def _past_prefix(self, rule: str) -> list[int]:
        """Prefix sums of the stored seconds of ``rule``, oldest first.

        Entry ``i`` sums the ``i`` oldest stored seconds; the last stored
        second is ``now - 1``. Average seconds are in planner units.
        """
        if self._prefix_at != self._now:
            self._prefix_at = self._now
            self._prefix = {}
        prefix = self._prefix.get(rule)
        if prefix is None:
            window = self.avg if rule == "avg" else self.peak
            ring, pos = window._ring, window._pos
            stored = chain(ring[pos:], ring[:pos])
            if rule == "avg":
                # quantize(u), inlined: this runs over a whole window.
                stored = (int(u * SCALE + 0.999999) for u in stored)
            prefix = self._prefix[rule] = list(accumulate(stored, initial=0))
        return prefix


def _iso(ts: int) -> str:
    """A UNIX second as ISO-8601 UTC, for messages."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(level: float) -> int:
    return round(level * 1e6)


def _highest(profile: _Profile, start: int, end: int) -> int:
    """The largest value of ``profile`` over ``[start, end)``."""
    value, _ = profile.at(start)
    first = bisect_right(profile.points, start)
    last = bisect_left(profile.points, end)
    return max([value, *profile.values[first:last]])


class _Cumulative:
    """Sums of a profile from second ``origin`` up to any later second."""

    __slots__ = ("xs", "vs", "acc")

    def __init__(self, profile: _Profile, origin: int) -> None:
        value, _ = profile.at(origin)
        self.xs = [origin]
        self.vs = [value]
        self.acc = [0]
        later = bisect_right(profile.points, origin)
        for x, v in zip(profile.points[later:], profile.values[later:], strict=True):
            self.acc.append(self.acc[-1] + self.vs[-1] * (x - self.xs[-1]))
            self.xs.append(x)
            self.vs.append(v)

    def at(self, x: int) -> int:
        """The sum over ``[origin, x)``, for ``x >= origin``."""
        i = bisect_right(self.xs, x) - 1
        return self.acc[i] + self.vs[i] * (x - self.xs[i])

    def value(self, x: int) -> int:
        """The profile's value at second ``x >= origin``."""
        return self.vs[bisect_right(self.xs, x) - 1]


class _Scan:
    """The windows of one rule that overlap an interval ``[start, end)``.

    Windows start at every ``k`` in ``[start - W + 1, end)``. Seconds before
    ``now`` are measured (prefix sums in :attr:`past`), later ones planned
    (a profile, for the percent asked about). A window of planned seconds
    only sums linearly in ``k`` between the profile's breakpoints, so only
    the ends of each such stretch are examined; a window holding measured
    seconds is summed from the prefix sums, one pass per stretch of constant
    planned value. The answers equal summing every window second by second,
    ties going to the earliest window. Results are remembered per plan.
    """

    def __init__(
        self, w: int, budget: int, start: int, end: int, now: int, profile_of
    ) -> None:
        self.w = w
        self.budget = budget
        self.first = start - w + 1
        self.end = end
        self.now = now
        self.profile_of = profile_of
        self.past: list[int] = []
        self._seen: dict[tuple, tuple[int, int]] = {}

    def excess(self, percent: float) -> tuple[int, int]:
        """Worst ``window sum - budget`` with ``percent`` reserved, and the
        start of the earliest window that reaches it."""
        profile = self.profile_of(percent)
        key = (profile.base, tuple(profile.points), tuple(profile.values))
        seen = self._seen.get(key)
        if seen is None:
            worst, k = self._worst(profile)
            seen = self._seen[key] = (worst - self.budget, k)
        return seen

    def _worst(self, profile: _Profile) -> tuple[int, int]:
        cum = _Cumulative(profile, self.now)
        worst, at = -NEVER, self.first
        for total, k in chain(self._measured(profile, cum), self._planned(cum)):
            if total > worst:
                worst, at = total, k
        return worst, at

    def _measured(self, profile: _Profile, cum: _Cumulative):
        """Best window per stretch among windows starting before now.

        Within a stretch the window's planned part grows by the value ``v``
        at its right edge per second, so the sum is ``v * j - past[j]`` plus
        a constant: one max over a slice of the prefix sums.
        """
        w, now, past = self.w, self.now, self.past
        low, high = self.first, min(now, self.end)
        if low >= high:
            return
        held = len(past) - 1
        origin = now - held
        cuts = [x - w for x in profile.points if low < x - w < high]
        for a, b in zip([low, *cuts], [*cuts, high], strict=True):
            v = cum.value(a + w)
            base = past[held] + cum.at(a + w)
            stored = past[a - origin : b - origin]
            if v == 0:
                least = min(stored)
                yield base - least, a + stored.index(least)
            else:
                sums = list(map(sub, range(0, v * (b - a), v), stored))
                best = max(sums)
                yield base + best, a + sums.index(best)

    def _planned(self, cum: _Cumulative):
        """Best window per stretch among windows of planned seconds only.

        A window's sum is linear in its start between breakpoints, so the
        earliest maximum of a stretch is at one of its ends.
        """
        w = self.w
        low, high = max(self.first, self.now), self.end
        if low >= high:
            return
        cuts = sorted({c for x in cum.xs[1:] for c in (x, x - w) if low < c < high})
        for a, b in zip([low, *cuts], [*cuts, high], strict=True):
            left = cum.at(a + w) - cum.at(a)
            right = cum.at(b - 1 + w) - cum.at(b - 1)
            yield (right, b - 1) if right > left else (left, a)
