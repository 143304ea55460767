"""Modes, tiers, smoothing and the reasons operators read."""

import pytest

from scheduling.engine import Engine, EngineError
from scheduling.policy import Policy, PolicySettings, tier_index


def policy(mode="balanced", **changes):
    return Policy(PolicySettings(mode=mode, **changes))


@pytest.mark.parametrize(
    ("remaining", "tier"),
    [(100.0, 0), (20.01, 0), (20.0, 1), (5.0, 1), (4.99, 2), (1.0, 2), (0.99, 3)],
)
def test_tiers_follow_the_design_cut_points(remaining, tier):
    assert tier_index(remaining, emergency_threshold=1.0) == tier


def test_balanced_takes_the_tier_limit_under_a_high_bound():
    p = policy()

    cap = p.step(0, bound=100.0, remaining=12.0, floor=5.0)

    assert cap == 60.0
    assert p.tier == "medium"
    assert (
        p.reason()
        == "average budget 12.0 % left: tight tier, cap 60.0 % (balanced mode)"
    )


def test_the_bound_wins_over_the_floor_and_says_so():
    p = policy("aggressive")

    cap = p.step(0, bound=3.0, remaining=0.0, floor=5.0)

    assert cap == 3.0
    assert "below the guaranteed 5.0 %: the rules win" in p.reason()


def test_aggressive_spends_up_to_the_bound_and_absolute_max():
    p = policy("aggressive")

    assert p.step(0, bound=40.0, remaining=50.0, floor=5.0) == 40.0
    assert "held at the planner bound 40.0 %" in p.reason()
    assert p.step(1, bound=30.0, remaining=50.0, floor=5.0) == 30.0
    assert p.action == "decrease"


def test_decreases_apply_at_once_and_increases_wait_and_step():
    p = policy("aggressive", step=5.0, interval_s=10, smooth=0.3, change_threshold=2.0)
    p.step(0, bound=50.0, remaining=50.0, floor=5.0)

    assert p.step(1, bound=20.0, remaining=50.0, floor=5.0) == 20.0
    assert p.step(2, bound=90.0, remaining=50.0, floor=5.0) == 25.0
    assert p.action == "increase"
    assert p.step(5, bound=90.0, remaining=50.0, floor=5.0) == 25.0
    assert "rising toward 90.0 % in steps" in p.reason()
    assert p.step(12, bound=90.0, remaining=50.0, floor=5.0) == 30.0


def test_increases_smaller_than_the_change_threshold_are_skipped():
    p = policy("aggressive", change_threshold=2.0)
    p.step(0, bound=50.0, remaining=50.0, floor=5.0)

    assert p.step(100, bound=51.5, remaining=50.0, floor=5.0) == 50.0
    assert p.action == "maintain"
    assert p.step(200, bound=48.5, remaining=50.0, floor=5.0) == 48.5


def test_a_small_gap_closes_by_at_least_the_change_threshold():
    p = policy("aggressive", smooth=0.1, change_threshold=2.0)
    p.step(0, bound=50.0, remaining=50.0, floor=5.0)

    assert p.step(100, bound=53.0, remaining=50.0, floor=5.0) == 52.0


def test_tier_speed_scales_the_step():
    p = policy(step=10.0, smooth=1.0, tier_speeds=(1.0, 0.7, 0.5, 0.5))
    p.step(0, bound=100.0, remaining=10.0, floor=5.0)
    p.step(1, bound=5.0, remaining=10.0, floor=5.0)

    assert p.step(20, bound=100.0, remaining=10.0, floor=5.0) == 12.0


def test_a_reservation_starting_now_raises_the_cap_at_once():
    p = policy("conservative", interval_s=600)
    p.step(0, bound=100.0, remaining=0.0, floor=5.0)

    cap = p.step(1, bound=100.0, remaining=0.0, floor=70.0)

    assert cap == 70.0
    assert "reservation guarantees 70.0 %" in p.reason()


def test_conservative_paces_from_twice_to_once_the_sustainable_rate():
    empty = policy("conservative", sustainable=28.5)
    full = policy("conservative", sustainable=28.5)

    assert empty.step(0, bound=100.0, remaining=100.0, floor=5.0) == 57.0
    assert full.step(0, bound=100.0, remaining=0.0, floor=5.0) == 28.5


def test_emergency_tier_uses_the_emergency_limit():
    p = policy()

    assert p.step(0, bound=100.0, remaining=0.5, floor=5.0) == 20.0
    assert p.tier == "emergency"


PARAMS = {
    "limits.avg_window_hours": 100 / 3600,
    "limits.avg_max_usage": 30.0,
    "limits.peak_window_hours": 200 / 3600,
    "limits.peak_max_duration": 5,
    "limits.absolute_min_cpu": 5.0,
    "limits.safety_margin": 0.0,
    "scheduler.mode": "aggressive",
}


def test_the_engine_decides_records_and_reports_status():
    engine = Engine.from_params(PARAMS, history=[30.0] * 50, now=1000)

    decision = engine.decide(1000)
    engine.record(1000, decision.cap)
    status = engine.status()

    assert engine.planner.limits.avg_window_s == 100
    # 1500 %-s used and 50 s x 5 % promised leave far more than 100 %.
    assert decision.bound == 100.0
    assert decision.cap == 95.0
    assert decision.tier == "high"
    assert decision.action == "maintain"
    assert status.peak_used_s == 1
    assert status.peak_remaining_s == 4
    assert status.avg_mean == pytest.approx(15.95)
    assert status.run_time_at_100 == 4
    # (3000 - 1595) / 3000 of the budget is left.
    assert status.avg_remaining_percent == pytest.approx(46.8333, abs=1e-3)
    assert status.tier == "high"


def test_the_engine_refuses_gaps_and_going_back():
    engine = Engine.from_params(PARAMS, now=1000)

    with pytest.raises(
        EngineError, match="Expected a sample for second 1000, got 1002"
    ):
        engine.record(1002, 10.0)
    with pytest.raises(EngineError, match="Asked for second 999"):
        engine.decide(999)


def test_the_engine_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="Unknown scheduler.mode 'fast'"):
        Engine.from_params({"scheduler.mode": "fast"}, now=0)
