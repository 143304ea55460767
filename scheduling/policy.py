"""Scheduling modes: how fast to spend under the planner's bound.

The planner gives the largest safe cap; a mode picks a target at or below it:

- ``aggressive`` spends up to the bound (and ``limits.absolute_max_cpu``);
- ``balanced`` follows the tiered limits of the original design by remaining
  average quota (plenty > 20 %, tight 5-20 %, nearly exhausted < 5 %,
  emergency below ``scheduler.emergency_threshold``);
- ``conservative`` paces toward the sustainable rate: the planned average
  limit, plus the unspent budget spread over one window length.

"Remaining quota" is the share of the average window's budget (after the
safety margin) not used by the last W seconds: ``100 x (B - U) / B``.

Every target is clipped to ``[absolute_min_cpu, absolute_max_cpu]``, raised
to the reservation active now, and then cut to the bound: the bound always
wins. Decreases apply at once; increases are smoothed and rate-limited
(docs/planner.md, "Policy").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MODES = ("aggressive", "balanced", "conservative")
TIERS = ("high", "medium", "low", "emergency")
TIER_WORDS = {
    "high": "plenty",
    "medium": "tight",
    "low": "nearly exhausted",
    "emergency": "emergency",
}

HIGH_ABOVE = 20.0
"""Remaining quota (%) above which quota is plenty (the design's 20 %)."""

LOW_BELOW = 5.0
"""Remaining quota (%) below which quota is nearly exhausted (5 %)."""

INCREASE, DECREASE, MAINTAIN = "increase", "decrease", "maintain"


@dataclass(frozen=True)
class PolicySettings:
    """The scheduler.* and limits.* numbers a policy needs."""

    mode: str = "balanced"
    absolute_min: float = 5.0
    absolute_max: float = 95.0
    step: float = 5.0
    interval_s: float = 10.0
    smooth: float = 0.3
    change_threshold: float = 2.0
    tier_limits: tuple[float, float, float, float] = (85.0, 60.0, 35.0, 20.0)
    tier_speeds: tuple[float, float, float, float] = (1.0, 0.7, 0.5, 0.5)
    emergency_threshold: float = 1.0
    sustainable: float = 28.5

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], sustainable: float
    ) -> PolicySettings:
        """Read the settings from parameter keys (missing keys: defaults)."""
        d = cls()

        def num(key: str, default: float) -> float:
            return float(params.get(key, default))

        mode = str(params.get("scheduler.mode", d.mode))
        if mode not in MODES:
            raise ValueError(
                f"Unknown scheduler.mode {mode!r}, expected one of {MODES}"
            )
        low_speed = num("scheduler.quota_low_adjustment_speed", d.tier_speeds[2])
        return cls(
            mode=mode,
            absolute_min=num("limits.absolute_min_cpu", d.absolute_min),
            absolute_max=num("limits.absolute_max_cpu", d.absolute_max),
            step=num("scheduler.adjustment_step", d.step),
            interval_s=num("scheduler.adjustment_interval", d.interval_s),
            smooth=num("scheduler.smooth_factor", d.smooth),
            change_threshold=num("scheduler.change_threshold", d.change_threshold),
            tier_limits=(
                num("scheduler.quota_high_cpu_limit", d.tier_limits[0]),
                num("scheduler.quota_medium_cpu_limit", d.tier_limits[1]),
                num("scheduler.quota_low_cpu_limit", d.tier_limits[2]),
                num("scheduler.emergency_cpu_limit", d.tier_limits[3]),
            ),
            tier_speeds=(
                num("scheduler.quota_high_adjustment_speed", d.tier_speeds[0]),
                num("scheduler.quota_medium_adjustment_speed", d.tier_speeds[1]),
                low_speed,
                # The design gives emergency mode no speed of its own.
                low_speed,
            ),
            emergency_threshold=num(
                "scheduler.emergency_threshold", d.emergency_threshold
            ),
            sustainable=sustainable,
        )


def tier_index(remaining_percent: float, emergency_threshold: float) -> int:
    """Index into :data:`TIERS` for a remaining average quota (%)."""
    if remaining_percent < emergency_threshold:
        return 3
    if remaining_percent < LOW_BELOW:
        return 2
    if remaining_percent <= HIGH_ABOVE:
        return 1
    return 0


class Policy:
    """Turns the bound into a cap, one second at a time.

    After :meth:`step` the attributes ``cap``, ``tier``, ``action``,
    ``target``, ``bound``, ``floor`` and ``remaining`` describe the decision;
    :meth:`reason` words it for an operator.
    """

    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        s = settings
        self._mode = MODES.index(s.mode)
        self._lo = s.absolute_min
        self._hi = s.absolute_max
        self._emergency = s.emergency_threshold
        self._threshold = s.change_threshold
        self._interval = s.interval_s
        self._limits = s.tier_limits
        self._steps = tuple(s.step * speed for speed in s.tier_speeds)
        self._sustainable = s.sustainable
        self.cap: float | None = None
        self._last_increase = -(1 << 62)
        self.tier = TIERS[0]
        self.action = MAINTAIN
        self.target = 0.0
        self.bound = 0.0
        self.floor = 0.0
        self.remaining = 100.0
        self.waiting = False

    def step(self, now: int, bound: float, remaining: float, floor: float) -> float:
        """The cap for second ``now`` (CPU %), given the planner's figures.

        ``remaining`` is the remaining average quota in percent of the budget,
        ``floor`` the guaranteed minimum of this second (floor or reservation).
        Runs once per simulated second, hence the flat shape.
        """
        tier = tier_index(remaining, self._emergency)
        target = self._target(tier, remaining)
        if target > self._hi:
            target = self._hi
        if target < self._lo:
            target = self._lo
        if target < floor:
            target = floor
        if target > bound:
            target = bound

        self.tier = TIERS[tier]
        self.target = target
        self.bound = bound
        self.floor = floor
        self.remaining = remaining
        self.waiting = False

        previous = self.cap
        if previous is None:
            cap = target
        elif target < previous:
            forced = previous > bound or previous - target >= self._threshold
            cap = target if forced else previous
        elif target > previous:
            cap = self._increase(now, previous, target, tier)
        else:
            cap = previous

        if previous is None or cap == previous:
            self.action = MAINTAIN
        else:
            self.action = INCREASE if cap > previous else DECREASE
        self.cap = cap
        return cap

    def _target(self, tier: int, remaining: float) -> float:
        """What the mode would like before any clipping."""
        mode = self._mode
        if mode == 0:
            return self._hi
        if mode == 1:
            return self._limits[tier]
        share = min(max(remaining, 0.0), 100.0) / 100.0
        return self._sustainable * (1.0 + share)

    def _increase(self, now: int, previous: float, target: float, tier: int) -> float:
        """One smoothed step up, at most once per adjustment interval.

        The floor of this second is honoured at once: a reservation starting
        now cannot wait for the next interval.
        """
        floor = min(self.floor, target)
        gap = target - previous
        if gap < self._threshold or now - self._last_increase < self._interval:
            self.waiting = gap >= self._threshold
            return floor if floor > previous else previous

        delta = self.settings.smooth * gap
        if delta < self._threshold:
            delta = self._threshold
        if delta > self._steps[tier]:
            delta = self._steps[tier]
        self._last_increase = now
        cap = previous + min(delta, gap)
        return floor if floor > cap else cap

    def reason(self) -> str:
        """The last decision in words an operator can read."""
        head = (
            f"average budget {self.remaining:.1f} % left: "
            f"{TIER_WORDS[self.tier]} tier, cap {self.cap or 0.0:.1f} %"
        )
        why = self._why()
        return f"{head} ({why})" if why else head

    def _why(self) -> str:
        cap = self.cap or 0.0
        if self.bound < self.floor:
            return (
                f"planner bound {self.bound:.1f} % is below the guaranteed "
                f"{self.floor:.1f} %: the rules win"
            )
        if cap >= self.bound - 1e-9 and self.bound < self._hi:
            return f"held at the planner bound {self.bound:.1f} %"
        if self.waiting:
            return f"rising toward {self.target:.1f} % in steps"
        if cap <= self.floor + 1e-9 and self.floor > self._lo:
            return f"reservation guarantees {self.floor:.1f} %"
        return f"{self.settings.mode} mode"
