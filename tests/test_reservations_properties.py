"""Property: whatever reservations are accepted, a saturating workload run by
the engine with them breaks no rule and gets every active slot its percent.

Short windows keep each simulation to a few thousand seconds: a 10-minute
average window at 30 %, a 20-minute peak window with 60 peak seconds.
Candidates are reviewed and saved through the service one after another,
as an operator would; the engine (scheduling/engine.py) then runs second by
second with the saved profile while the workload uses every bit of its cap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpusched import config
from reservations import service
from reservations.models import Reservation
from reservations.profile import future_profile
from reservations.service import Draft, ReservationError
from scheduling.engine import Engine

pytestmark = pytest.mark.django_db

NOW = 1_900_000_020 // 60 * 60
AVG_W = 600
PEAK_W = 1200
PARAMS = {
    "limits.avg_window_hours": AVG_W / 3600,
    "limits.peak_window_hours": PEAK_W / 3600,
    "limits.peak_max_duration": 60,
    "reservation.min_duration": 1,
    "reservation.max_duration": 0.2,
    "reservation.allow_overlap": True,
    "reservation.max_concurrent": 3,
    "scheduler.mode": "aggressive",
}
HORIZON = 1800

candidate = st.tuples(
    st.integers(min_value=0, max_value=HORIZON // 60 - 2),  # start minute
    st.integers(min_value=1, max_value=10),  # minutes
    st.sampled_from([5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 80.0, 95.0]),
    st.integers(min_value=1, max_value=10),  # priority
)


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def accept(candidates) -> int:
    """Offer each candidate to the service; return how many were accepted."""
    accepted = 0
    for i, (minute, minutes, percent, priority) in enumerate(candidates):
        start = at(NOW + minute * 60)
        draft = Draft(
            name=f"r{i}",
            start_time=start,
            end_time=start + timedelta(minutes=minutes),
            cpu_quota=percent,
            priority=priority,
        )
        try:
            service.save(draft, "hypothesis", now=NOW)
        except ReservationError:
            continue
        accepted += 1
    return accepted


def simulate(params) -> tuple[list[float], list[float], list[float]]:
    """Caps, use and reserved level per second with a saturating workload."""
    slots = future_profile(NOW, NOW + HORIZON + AVG_W)
    engine = Engine.from_params(params, history=(), now=NOW)
    engine.set_profile([s.interval() for s in slots])
    caps, used, reserved = [], [], []
    for t in range(NOW, NOW + HORIZON + AVG_W):
        cap = engine.decide(t).cap
        level = sum(s.percent for s in slots if s.start <= t < s.end)
        engine.record(t, cap)
        caps.append(cap)
        used.append(cap)
        reserved.append(level)
    return caps, used, reserved


def worst_window_sum(values: list[float], w: int) -> float:
    padded = [0.0] * (w - 1) + values
    total = sum(padded[:w])
    worst = total
    for i in range(w, len(padded)):
        total += padded[i] - padded[i - w]
        worst = max(worst, total)
    return worst


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(candidate, min_size=1, max_size=5),
    st.sampled_from(["aggressive", "balanced", "conservative"]),
)
def test_accepted_reservations_never_break_a_rule_and_get_their_percent(
    candidates, mode
):
    config.apply({**PARAMS, "scheduler.mode": mode})
    Reservation.objects.all().delete()
    params = config.snapshot()

    accept(candidates)
    caps, used, reserved = simulate(params)

    limit = params["limits.avg_max_usage"]
    assert worst_window_sum(used, AVG_W) <= AVG_W * limit + 1e-6
    peak = [1.0 if u >= params["limits.peak_threshold"] else 0.0 for u in used]
    assert worst_window_sum(peak, PEAK_W) <= params["limits.peak_max_duration"]
    short = [
        (i, cap, level)
        for i, (cap, level) in enumerate(zip(caps, reserved, strict=True))
        if cap + 1e-6 < level
    ]
    assert short == []


def test_the_simulation_sees_the_accepted_reservations():
    config.apply(PARAMS)

    accepted = accept([(5, 2, 60.0, 5), (6, 2, 30.0, 5)])
    caps, _, reserved = simulate(config.snapshot())

    assert accepted == 2
    assert max(reserved) == 90.0
    assert all(cap >= level for cap, level in zip(caps, reserved, strict=True))
