"""The O(1) planner against brute force over random histories and profiles."""

from itertools import accumulate
from operator import sub

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.planner import SCALE, Limits, Planner, _profile, levels, quantize

NOW = 1_000_000


def level_at(limits, intervals, s):
    """The planned minimum of second ``s``, summed directly."""
    reserved = sum(p for a, b, p in intervals if a <= s < b)
    return max(limits.floor, reserved)


def brute_slack(limits, history, intervals, t, window, budget, value):
    """Largest ``budget - window sum`` over windows holding second ``t``.

    Each window is summed second by second: O(W) per window.
    """
    worst = None
    for k in range(t - window + 1, t + 1):
        total = sum(value(history.get(s, 0.0)) for s in range(k, t))
        total += sum(
            value(level_at(limits, intervals, s)) for s in range(t + 1, k + window)
        )
        worst = total if worst is None else max(worst, total)
    return budget - worst


def brute_bound(limits, history, intervals, t):
    avg = brute_slack(
        limits,
        history,
        intervals,
        t,
        limits.avg_window_s,
        limits.avg_budget_units,
        quantize,
    )
    peak = brute_slack(
        limits,
        history,
        intervals,
        t,
        limits.peak_window_s,
        limits.peak_budget_effective,
        lambda u: int(u >= limits.peak_threshold),
    )
    return avg, peak


limits_strategy = st.builds(
    Limits,
    avg_window_s=st.integers(30, 200),
    avg_limit=st.sampled_from([10.0, 30.0, 55.5]),
    peak_window_s=st.integers(30, 200),
    peak_threshold=st.sampled_from([50.0, 95.0]),
    peak_budget_s=st.integers(0, 20),
    floor=st.sampled_from([0.0, 5.0]),
    safety_margin=st.sampled_from([0.0, 5.0]),
)
cpu = st.one_of(
    st.sampled_from([0.0, 50.0, 95.0, 100.0]),
    st.floats(0, 100, allow_nan=False),
)
interval = st.tuples(
    st.integers(NOW - 50, NOW + 400),
    st.integers(1, 300),
    st.integers(0, 80).map(lambda p: p / 2),
).map(lambda iv: (iv[0], iv[0] + iv[1], iv[2]))


@settings(max_examples=25, deadline=None)
@given(
    limits=limits_strategy,
    history=st.lists(cpu, max_size=250),
    intervals=st.lists(interval, max_size=3),
    steps=st.lists(st.tuples(cpu, st.booleans()), min_size=1, max_size=12),
)
def test_the_cap_equals_brute_force(limits, history, intervals, steps):
    planner = Planner(limits, NOW, history)
    known = {NOW - len(history) + i: u for i, u in enumerate(history)}
    planner.set_profile(intervals)

    for use, spend_bound in steps:
        t = planner.now
        avg, peak = brute_bound(limits, known, intervals, t)

        assert planner._avg_rule.slack() == avg
        assert planner.peak_slack() == peak
        expected = min(max(avg / SCALE, 0.0), 100.0)
        if avg / SCALE >= limits.peak_threshold and peak < 1:
            expected = limits.peak_threshold - 0.5
        assert planner.bound() == expected

        use = planner.bound() if spend_bound else use
        planner.record(use)
        known[t] = use


def brute_run_time(limits, history, intervals, t, level, horizon):
    """Longest run at ``level`` found by trying every length.

    Only windows holding a second of the run that counts for the rule (any
    use for the average rule, a peak second for the peak rule) are checked:
    windows the past or the reservations alone break are not the run's.
    """
    start = t - max(limits.avg_window_s, limits.peak_window_s)
    stop = t + horizon + max(limits.avg_window_s, limits.peak_window_s) + 1
    past = [history.get(s, 0.0) for s in range(start, t)]
    floors = [level_at(limits, intervals, s) for s in range(t, stop)]

    def over(series, window, budget, n):
        # Windows holding a run second that counts for this rule.
        run = [s for s in range(t - start, t + n - start) if series[s]]
        starts = {k for s in run for k in range(s - window + 1, s + 1)}
        sums = [sum(series[k : k + window]) for k in starts]
        return bool(sums) and max(sums) > budget

    def fits(n):
        use = past + [max(level, f) for f in floors[:n]] + floors[n:]
        avg = [quantize(u) for u in use]
        peak = [int(u >= limits.peak_threshold) for u in use]
        return not (
            over(avg, limits.avg_window_s, limits.avg_budget_units, n)
            or over(peak, limits.peak_window_s, limits.peak_budget_effective, n)
        )

    n = 0
    while n < horizon and fits(n + 1):
        n += 1
    return n


@settings(max_examples=15, deadline=None)
@given(
    limits=limits_strategy,
    history=st.lists(cpu, max_size=120),
    intervals=st.lists(interval, max_size=2),
    level=st.sampled_from([20.0, 60.0, 100.0]),
)
def test_run_time_matches_trying_every_length(limits, history, intervals, level):
    planner = Planner(limits, NOW, history)
    planner.set_profile(intervals)
    known = {NOW - len(history) + i: u for i, u in enumerate(history)}

    answer = planner.run_time_at(level, horizon_s=120)

    expected = brute_run_time(limits, known, intervals, NOW, level, 120)
    if answer is None:
        assert expected == 120
    else:
        assert answer == expected


def test_the_first_window_allows_the_whole_budget_at_once():
    limits = Limits(avg_window_s=100, avg_limit=30.0, floor=0.0, safety_margin=0.0)

    planner = Planner(limits, NOW)

    assert planner.bound() == 100.0
    assert planner.run_time_at(100.0) == 30
    assert planner.run_time_at(30.0) is None


def test_the_floor_of_future_seconds_is_kept_back():
    limits = Limits(avg_window_s=100, avg_limit=30.0, floor=5.0, safety_margin=0.0)
    planner = Planner(limits, NOW, [30.0] * 99)

    # 99 s at 30 % leave 30 %-s; the next window needs 99 s x 5 % kept back,
    # but the window ending now only holds the past: 3000 - 2970 = 30.
    assert planner.bound() == 30.0

    planner.record(30.0)

    assert planner.bound() == 30.0


def test_the_safety_margin_shrinks_both_budgets():
    limits = Limits(
        avg_window_s=1000, avg_limit=30.0, peak_budget_s=600, safety_margin=5.0
    )

    assert limits.avg_limit_effective == 28.5
    assert limits.avg_budget_units == 1000 * 285_000
    assert limits.peak_budget_effective == 570


def test_the_cap_stays_just_below_the_threshold_without_peak_seconds():
    limits = Limits(
        avg_window_s=100,
        avg_limit=90.0,
        peak_window_s=100,
        peak_budget_s=2,
        floor=0.0,
        safety_margin=0.0,
    )
    planner = Planner(limits, NOW, [96.0, 0.0, 97.0])

    assert planner.bound() == 94.5
    assert planner.peak_remaining_s() == 0


def test_a_reservation_lowers_the_cap_before_it_starts():
    limits = Limits(avg_window_s=100, avg_limit=30.0, floor=0.0, safety_margin=0.0)
    planner = Planner(limits, NOW)

    planner.set_profile([(NOW + 10, NOW + 50, 50.0)])

    # 40 s x 50 % = 2000 %-s of the 3000 are promised away.
    assert planner.bound() == 100.0
    assert planner.run_time_at(100.0) == 10
    assert planner.floor_now() == 0.0


def test_an_interval_that_does_not_fit_names_the_window_and_the_shortfall():
    limits = Limits(avg_window_s=100, avg_limit=30.0, floor=0.0, safety_margin=0.0)
    planner = Planner(limits, NOW, [20.0] * 50)

    check = planner.check_interval(NOW + 10, NOW + 30, 100.0)

    # Window NOW-50 .. NOW+50 holds 1000 past + 2000 reserved = 3000: fits.
    assert check.ok is True
    assert check.max_percent == 100.0

    check = planner.check_interval(NOW, NOW + 40, 100.0)

    # Windows from NOW-60 to NOW-50 on hold 1000 + 4000 %-s against 3000:
    # 2000 over; the earliest of them is reported.
    assert check.ok is False
    assert check.rule == "average"
    assert check.window_start == NOW - 60
    assert check.window_end == NOW + 40
    assert check.shortfall_cpu_s == 20.0
    assert check.shortfall_percent == 20.0
    assert check.max_percent == 50.0


def test_a_reserved_peak_interval_is_checked_against_the_peak_budget():
    limits = Limits(
        avg_window_s=100,
        avg_limit=100.0,
        peak_window_s=100,
        peak_budget_s=10,
        floor=0.0,
        safety_margin=0.0,
    )
    planner = Planner(limits, NOW)

    check = planner.check_interval(NOW + 5, NOW + 20, 96.0)

    assert check.ok is False
    assert check.rule == "peak"
    assert check.peak_excess_s == 5
    assert check.max_percent == 94.99


def test_the_forecast_spends_the_budget_then_returns_to_the_refill_rate():
    limits = Limits(avg_window_s=7200, avg_limit=25.0, floor=0.0, safety_margin=0.0)
    planner = Planner(limits, NOW)

    hours = planner.forecast(3)

    # 1800 CPU-s at 100 % in the first hour, nothing left in the second.
    assert hours[0].start == NOW
    assert hours[0].cap_mean == 50.0
    assert hours[1].cap_mean == 0.0
    assert hours[2].cap_mean == 50.0


def brute_fits(limits, history, intervals, t, extra):
    """Whether every window overlapping ``extra`` stays in budget."""
    start, end, _ = extra
    planned = [*intervals, extra]
    for window, budget, value in (
        (limits.avg_window_s, limits.avg_budget_units, quantize),
        (
            limits.peak_window_s,
            limits.peak_budget_effective,
            lambda u: int(u >= limits.peak_threshold),
        ),
    ):
        for k in range(max(t, start) - window + 1, end):
            if k + window <= t:
                continue
            total = 0
            for s in range(k, k + window):
                use = history.get(s, 0.0) if s < t else level_at(limits, planned, s)
                total += value(use)
            if total > budget:
                return False
    return True


@settings(max_examples=15, deadline=None)
@given(
    limits=limits_strategy,
    history=st.lists(cpu, max_size=120),
    intervals=st.lists(interval, max_size=2),
    extra=interval,
)
def test_an_interval_fits_exactly_when_brute_force_says_so(
    limits, history, intervals, extra
):
    planner = Planner(limits, NOW, history)
    planner.set_profile(intervals)
    known = {NOW - len(history) + i: u for i, u in enumerate(history)}
    start, end, percent = extra
    extra = (max(start, NOW), end, percent)

    check = planner.check_interval(*extra)

    if extra[1] <= extra[0]:
        assert check.ok is True
        return
    assert check.ok is brute_fits(limits, known, intervals, NOW, extra)
    best = (extra[0], extra[1], check.max_percent)
    assert brute_fits(limits, known, intervals, NOW, best) or check.max_percent == 0
    if check.max_percent < 100:
        above = (extra[0], extra[1], check.max_percent + 0.01)
        assert not brute_fits(limits, known, intervals, NOW, above)


def old_worst_window(past, profile, first, now, end, w, budget):
    """The window scan the planner used before its piecewise scan."""
    series = past + profile.series(max(first, now), end + w - 1)
    prefix = list(accumulate(series, initial=0))
    sums = list(map(sub, prefix[w:], prefix[:-w]))
    worst = max(sums)
    return worst - budget, first + sums.index(worst)


def old_excess(planner, start, end, percent, rule):
    """Worst excess of one rule, every window summed from a fresh series."""
    limits = planner.limits
    floor = planner.plan_floor
    pieces = levels([*planner._intervals, (start, end, percent)], floor)
    if rule == "avg":
        profile = _profile(pieces, floor, quantize)
        w, budget = limits.avg_window_s, limits.avg_budget_units
        stored = [quantize(u) for u in planner.avg.values()]
    else:
        threshold = limits.peak_threshold
        profile = _profile(pieces, floor, lambda level: int(level >= threshold))
        w, budget = limits.peak_window_s, limits.peak_budget_effective
        stored = list(planner.peak.bits())
    first = start - w + 1
    past = stored[len(stored) - (planner.now - first) :] if first < planner.now else []
    return old_worst_window(past, profile, first, planner.now, end, w, budget)


def old_check(planner, start, end, percent):
    """``(ok, excesses, windows, max_percent)`` by the former full bisection."""
    start = max(start, planner.now)
    avg = old_excess(planner, start, end, percent, "avg")
    peak = old_excess(planner, start, end, percent, "peak")
    top = max(planner._levels.series(start, end)) / 1e6
    threshold = planner.limits.peak_threshold
    base_peak_ok = old_excess(planner, start, end, 0.0, "peak")[0] <= 0

    def fits(p):
        if old_excess(planner, start, end, p, "avg")[0] > 0:
            return False
        if top + p < threshold:
            return base_peak_ok
        return old_excess(planner, start, end, p, "peak")[0] <= 0

    low, high = 0, 10_000
    if fits(0.0):
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if fits(mid / 100) else (low, mid - 1)
    return avg, peak, low / 100


@settings(max_examples=40, deadline=None)
@given(
    limits=limits_strategy,
    history=st.lists(cpu, max_size=250),
    intervals=st.lists(interval, max_size=3),
    extra=interval.filter(lambda iv: iv[1] > NOW),
)
def test_the_fast_check_equals_the_former_full_search(
    limits, history, intervals, extra
):
    planner = Planner(limits, NOW, history)
    planner.set_profile(intervals)
    start, end, percent = extra

    check = planner.check_interval(start, end, percent)
    quick = planner.check_interval(start, end, percent, want_max=False)

    (avg, avg_k), (peak, peak_k), fits = old_check(planner, start, end, percent)
    assert check.max_percent == fits
    assert check.ok is (avg <= 0 and peak <= 0)
    assert quick.ok is check.ok
    assert quick.max_percent == (None if check.ok else fits)
    if avg > 0:
        assert (check.rule, check.window_start) == ("average", avg_k)
        assert check.shortfall_cpu_s == avg / SCALE / 100.0
    elif peak > 0:
        assert (check.rule, check.window_start) == ("peak", peak_k)
        assert check.peak_excess_s == peak


def test_a_fitting_slot_skips_the_search_when_the_caller_needs_no_maximum():
    limits = Limits(avg_window_s=100, avg_limit=30.0, floor=0.0, safety_margin=0.0)
    planner = Planner(limits, NOW, [20.0] * 50)

    check = planner.check_interval(NOW + 10, NOW + 30, 100.0, want_max=False)

    assert check.ok is True
    assert check.max_percent is None
