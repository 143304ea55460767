"""Use outside the managed group: the estimate, the plan and its hysteresis."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.background import MINUTE_S, SPAN_MINUTES, BackgroundEstimate
from scheduling.engine import (
    BACKGROUND_HEADROOM,
    BACKGROUND_LOWER_AFTER_S,
    Engine,
)
from scheduling.planner import Limits, Planner
from tests.test_planner import NOW, brute_bound, interval, limits_strategy

T0 = 1_700_000_040  # a minute boundary
SHORT = {
    "limits.avg_window_hours": 600 / 3600,
    "limits.peak_window_hours": 1200 / 3600,
    "limits.safety_margin": 0.0,
    "limits.absolute_min_cpu": 5.0,
}


def feed(estimate: BackgroundEstimate, start: int, values: list[float]) -> float:
    for offset, value in enumerate(values):
        estimate.add(start + offset, value)
    return estimate.value


# The estimate -------------------------------------------------------------------


def test_a_steady_background_is_estimated_at_its_level_after_one_minute():
    estimate = BackgroundEstimate()

    assert feed(estimate, T0, [12.0] * 30) == 6.0
    assert feed(estimate, T0 + 30, [12.0] * 30) == 12.0
    assert feed(estimate, T0 + 60, [12.0] * 600) == 12.0


def test_one_busy_second_moves_the_estimate_by_a_sixtieth_of_it():
    estimate = BackgroundEstimate()
    feed(estimate, T0, [10.0] * 120)

    value = feed(estimate, T0 + 120, [70.0])

    assert value == 10.0
    assert feed(estimate, T0 + 121, [10.0] * 59) == 11.0


def test_a_busy_minute_is_remembered_for_a_quarter_of_an_hour_then_forgotten():
    estimate = BackgroundEstimate()
    feed(estimate, T0, [30.0] * MINUTE_S)
    quiet = T0 + MINUTE_S

    assert feed(estimate, quiet, [2.0] * (SPAN_MINUTES * MINUTE_S)) == 30.0
    assert feed(estimate, quiet + SPAN_MINUTES * MINUTE_S, [2.0]) == 2.0


def test_unknown_seconds_are_skipped_and_gaps_leave_their_minutes_out():
    estimate = BackgroundEstimate()
    feed(estimate, T0, [8.0] * MINUTE_S)

    assert estimate.add(T0 + 60, None) == 8.0
    assert estimate.add(T0 + 60 + 3600, 1.0) == 1.0 / MINUTE_S


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=2000))
def test_the_estimate_is_the_largest_minute_mean_of_the_last_quarter_hour(values):
    estimate = BackgroundEstimate()

    value = feed(estimate, T0, values)

    last = len(values) - 1
    current = last // MINUTE_S
    closed = [
        values[m * MINUTE_S : (m + 1) * MINUTE_S]
        for m in range(max(0, current - SPAN_MINUTES), current)
    ]
    expected = [sum(chunk) / len(chunk) for chunk in closed]
    expected.append(sum(values[current * MINUTE_S :]) / MINUTE_S)
    assert abs(value - max(expected)) < 1e-9


# The plan -----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    limits=limits_strategy,
    history=st.lists(st.floats(0, 100, allow_nan=False), max_size=250),
    intervals=st.lists(interval, max_size=3),
    background=st.sampled_from([0.0, 3.0, 12.5, 40.0, 97.0]),
    steps=st.integers(1, 8),
)
def test_the_cap_with_a_background_equals_brute_force_at_the_largest_need(
    limits, history, intervals, background, steps
):
    planner = Planner(limits, NOW, history, background)
    planner.set_profile(intervals)
    known = {NOW - len(history) + i: u for i, u in enumerate(history)}
    # Per future second the need is the largest of floor, background and
    # reservations: a plain floor at the larger of the first two.
    as_floor = replace(limits, floor=max(limits.floor, background))

    for _ in range(steps):
        t = planner.now
        avg, peak = brute_bound(as_floor, known, intervals, t)

        assert planner._avg_rule.slack() == avg
        assert planner.peak_slack() == peak
        use = planner.bound()
        planner.record(use)
        known[t] = use


def test_the_guaranteed_minimum_of_the_policy_ignores_the_background():
    limits = Limits()
    planner = Planner(limits, NOW, (), background=limits.floor + 20.0)

    assert planner.floor_now() == limits.floor
    assert planner.plan_floor == limits.floor + 20.0


def test_a_background_makes_a_reservation_that_fitted_no_longer_fit():
    engine = Engine.from_params({**SHORT, "limits.avg_max_usage": 30.0}, now=NOW)
    start, end = NOW + 60, NOW + 240

    # 180 s at 80 % and 420 s at the 5 % floor: 16,500 of 18,000 %-s.
    assert engine.planner.check_interval(start, end, 80.0).ok
    engine.set_background(12.0)
    check = engine.planner.check_interval(start, end, 80.0)

    # The other 420 s now need 12.5 %: 19,650 %-s.
    assert not check.ok
    assert check.rule == "average"


# Hysteresis ---------------------------------------------------------------------


def engine_at(background: float = 0.0) -> Engine:
    return Engine.from_params(SHORT, now=NOW, background=background)


def run(engine: Engine, seconds: int, estimate: float) -> list[bool]:
    rebuilt = []
    for _ in range(seconds):
        engine.record(engine.planner.now, 20.0)
        rebuilt.append(engine.set_background(estimate))
    return rebuilt


def test_a_rising_estimate_rebuilds_at_once_with_headroom():
    engine = engine_at()

    assert run(engine, 1, 12.0) == [True]
    assert engine.planner.plan_floor == 12.0 + BACKGROUND_HEADROOM


def test_rises_within_the_headroom_and_dips_below_two_points_keep_the_plan():
    engine = engine_at(12.0)

    rebuilt = run(engine, 5, 12.5) + run(engine, 2000, 10.6)

    assert not any(rebuilt)
    assert engine.planner.plan_floor == 12.5


def test_the_estimate_is_never_above_the_plan_between_rebuilds():
    engine = engine_at()
    for step in range(400):
        estimate = 5.0 + step * 0.05
        run(engine, 1, estimate)

        assert engine.planner.plan_floor >= estimate


def test_a_lower_estimate_lowers_the_plan_only_after_ten_quiet_minutes():
    engine = engine_at(12.0)

    first = run(engine, BACKGROUND_LOWER_AFTER_S, 9.0)
    last = run(engine, 1, 9.0)

    assert not any(first)
    assert last == [True]
    assert engine.planner.plan_floor == 9.0 + BACKGROUND_HEADROOM


def test_a_dip_that_ends_restarts_the_wait():
    engine = engine_at(12.0)

    rebuilt = run(engine, 500, 9.0) + run(engine, 1, 12.0) + run(engine, 500, 9.0)

    assert not any(rebuilt)
    assert engine.planner.plan_floor == 12.5


def test_a_background_that_stops_returns_the_plan_to_the_floor():
    engine = engine_at(6.0)

    rebuilt = run(engine, BACKGROUND_LOWER_AFTER_S + 1, 0.0)

    assert rebuilt.count(True) == 1
    assert engine.planner.plan_floor == 5.0


def test_a_background_below_the_floor_never_rebuilds():
    engine = engine_at()

    assert not any(run(engine, 1000, 4.0))
    assert engine.planner.plan_floor == 5.0
