"""The one object the service and the simulator both drive, once a second.

Per second the caller records the measured whole-machine CPU % of the second
that just ended (:meth:`Engine.record`) and asks for the cap of the second
that is starting (:meth:`Engine.decide`). Everything is pure Python: no
Django, no I/O, no clock reads except the default ``now`` of
:meth:`Engine.from_params`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduling.planner import PEAK_GAP, Interval, Limits, Planner
from scheduling.policy import TIERS, Policy, PolicySettings, tier_index

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "limits.avg_window_hours": 12.0,
    "limits.avg_max_usage": 30.0,
    "limits.peak_window_hours": 24.0,
    "limits.peak_threshold": 95.0,
    "limits.peak_max_duration": 600,
    "limits.absolute_min_cpu": 5.0,
    "limits.absolute_max_cpu": 95.0,
    "limits.safety_margin": 5.0,
    "scheduler.mode": "balanced",
}
"""Defaults of the keys the engine reads, as in the original design."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The cap for one second and why."""

    cap: float
    bound: float
    tier: str
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class Status:
    """Live figures: windows, budgets, the bound and how long 100 % may last.

    CPU-seconds are whole-machine seconds: 100 % for one second is 1.0.
    ``run_time_at_100`` is ``None`` when 100 % could be held forever.
    """

    avg_mean: float
    avg_remaining_percent: float
    avg_remaining_cpu_s: float
    peak_used_s: int
    peak_remaining_s: int
    bound: float
    run_time_at_100: int | None
    tier: str


class EngineError(ValueError):
    """A caller broke the engine's contract (time going back, gaps)."""


def limits_from_params(params: Mapping[str, Any]) -> Limits:
    """The planner's :class:`Limits` from parameter keys (missing: defaults)."""

    def get(key: str) -> Any:
        return params.get(key, DEFAULTS[key])

    return Limits(
        avg_window_s=max(1, round(float(get("limits.avg_window_hours")) * 3600)),
        avg_limit=float(get("limits.avg_max_usage")),
        peak_window_s=max(1, round(float(get("limits.peak_window_hours")) * 3600)),
        peak_threshold=float(get("limits.peak_threshold")),
        peak_budget_s=int(get("limits.peak_max_duration")),
        floor=float(get("limits.absolute_min_cpu")),
        safety_margin=float(get("limits.safety_margin")),
    )


class Engine:
    """Windows, planner and policy behind one small interface."""

    def __init__(self, planner: Planner, policy: Policy) -> None:
        self.planner = planner
        self.policy = policy

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        history: Iterable[float] = (),
        now: int | None = None,
    ) -> Engine:
        """Build from parameter keys and measured history.

        ``history`` is whole-machine CPU % per second, oldest first, ending at
        second ``now - 1``; seconds before it count as idle, so pass at least
        :attr:`history_needed_s` seconds with gaps already filled.
        """
        if now is None:
            now = int(time.time())
        limits = limits_from_params(params)
        planner = Planner(limits, int(now), history)
        settings = PolicySettings.from_params(params, limits.avg_limit_effective)
        logger.debug("Engine built for %s at %d", limits, now)
        return cls(planner, Policy(settings))

    @property
    def history_needed_s(self) -> int:
        """Seconds of history that fill both windows."""
        limits = self.planner.limits
        return max(limits.avg_window_s, limits.peak_window_s)

    def record(self, ts: int, cpu_percent: float) -> None:
        """Store the measured CPU % of second ``ts``, the next expected one."""
        planner = self.planner
        if ts != planner._now:
            raise EngineError(
                f"Expected a sample for second {planner._now}, got {ts!r}: "
                "samples must be consecutive (fill gaps before recording)"
            )
        planner.record(cpu_percent)

    def set_profile(self, intervals: list[Interval]) -> None:
        """Replace the reserved ``(start_ts, end_ts, percent)`` intervals."""
        self.planner.set_profile(intervals)

    def cap_for(self, now: int) -> float:
        """The cap (CPU %) for second ``now``, without building a Decision.

        The same computation as :meth:`decide`; the simulator uses it so a
        replay does not format a reason every second.
        """
        planner = self.planner
        if now != planner._now:
            raise EngineError(
                f"Asked for second {now!r} but the last recorded second is "
                f"{planner._now - 1}"
            )
        bound, remaining, floor = planner.inputs()
        return self.policy.step(now, bound, remaining, floor)

    def decide(self, now: int) -> Decision:
        """The cap for second ``now`` (the one just starting), with its reason."""
        cap = self.cap_for(now)
        policy = self.policy
        reason = policy.reason()
        if self._peak_held(policy.bound):
            reason = f"peak budget used up, held below the threshold; {reason}"
        return Decision(cap, policy.bound, policy.tier, policy.action, reason)

    def _peak_held(self, bound: float) -> bool:
        threshold = self.planner.limits.peak_threshold
        return abs(bound - (threshold - PEAK_GAP)) < 1e-9

    def status(self) -> Status:
        """Live figures for the dashboard, read at second :attr:`Planner.now`."""
        planner = self.planner
        remaining = planner.avg_remaining_percent()
        tier = tier_index(remaining, self.policy.settings.emergency_threshold)
        return Status(
            avg_mean=planner.avg_mean(),
            avg_remaining_percent=remaining,
            avg_remaining_cpu_s=planner.avg_remaining_cpu_s(),
            peak_used_s=planner.peak_used_s(),
            peak_remaining_s=planner.peak_remaining_s(),
            bound=planner.bound(),
            run_time_at_100=planner.run_time_at(100.0),
            tier=TIERS[tier],
        )
