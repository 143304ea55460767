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

BACKGROUND_HEADROOM = 0.5
"""Percentage points above the background estimate that the plan assumes.

A new plan costs O(W) (about 0.1 s with 12 h/24 h windows), too much for
every second. Planning this much above the estimate lets it rise by up to
half a point without a rebuild, and as soon as it rises past what the plan
assumes the plan is rebuilt at once: the estimate is never above the plan."""

BACKGROUND_LOWER_BY = 2.0
"""Percentage points the plan must be able to drop before it is lowered
(or all the way to the floor): small dips are not worth a rebuild."""

BACKGROUND_LOWER_AFTER_S = 600
"""Seconds the estimate must stay that low before the plan is lowered.

Lowering hands budget to the managed group now against a quieter future; a
background that dips for a few minutes and returns would then find the
budget spent. Ten minutes of calm on top of the estimate's own quarter-hour
memory make that unlikely, and a late lowering only costs throughput."""


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


def _planned_background(floor: float, estimate: float) -> float:
    """What the plan assumes for a background estimate (never below the floor)."""
    planned = estimate + BACKGROUND_HEADROOM
    return planned if planned > floor else floor


class Engine:
    """Windows, planner and policy behind one small interface."""

    def __init__(self, planner: Planner, policy: Policy) -> None:
        self.planner = planner
        self.policy = policy
        self._low_since: int | None = None

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        history: Iterable[float] = (),
        now: int | None = None,
        background: float = 0.0,
    ) -> Engine:
        """Build from parameter keys and measured history.

        ``history`` is whole-machine CPU % per second, oldest first, ending at
        second ``now - 1``; seconds before it count as idle, so pass at least
        :attr:`history_needed_s` seconds with gaps already filled.
        ``background`` is the current estimate of use outside the managed
        group (:class:`scheduling.background.BackgroundEstimate`), planned
        for at once as :meth:`set_background` would.
        """
        if now is None:
            now = int(time.time())
        limits = limits_from_params(params)
        planned = _planned_background(limits.floor, background)
        planner = Planner(limits, int(now), history, planned)
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

    def set_background(self, percent: float) -> bool:
        """Plan future seconds for ``percent`` CPU used outside the group.

        ``percent`` is the current background estimate. Every future second
        is planned at no less than it plus :data:`BACKGROUND_HEADROOM`. The
        plan is rebuilt (O(W)) at once when the estimate rises above what the
        plan assumes, and lowered only after the estimate has allowed a plan
        :data:`BACKGROUND_LOWER_BY` points lower (or the plain floor) for
        :data:`BACKGROUND_LOWER_AFTER_S` seconds. Returns whether the plan
        was rebuilt.
        """
        planner = self.planner
        floor = planner.limits.floor
        in_use = planner.plan_floor
        wanted = _planned_background(floor, percent)
        if percent > in_use:
            self._low_since = None
            return self._plan_background(wanted, "rose")

        drop = in_use - wanted
        if not (drop >= BACKGROUND_LOWER_BY or (drop > 0 and wanted <= floor)):
            self._low_since = None
            return False
        if self._low_since is None:
            self._low_since = planner.now
        if planner.now - self._low_since < BACKGROUND_LOWER_AFTER_S:
            return False
        self._low_since = None
        return self._plan_background(wanted, "fell")

    def _plan_background(self, planned: float, how: str) -> bool:
        before = self.planner.plan_floor
        rebuilt = self.planner.set_background(planned)
        if rebuilt:
            # Debug: a rising background rebuilds every few seconds.
            logger.debug(
                "Use outside the managed group %s: future seconds are now "
                "planned at %.1f %% instead of %.1f %%",
                how,
                self.planner.plan_floor,
                before,
            )
        return rebuilt

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
