"""The scheduler's alert rules, evaluated every tick.

Each rule looks at the tick's :class:`Facts` and answers with a severity and
a message, or nothing. Alerts are raised (:func:`alerts.service.raise_alert`)
when a rule starts firing or its severity changes, and resolved when it
stops, so a steady condition costs no database write per second.

Rules and their switches (``alerts.enabled`` switches all of them off):

====================== ============================== ==========================
key                    fires when                     switch
====================== ============================== ==========================
quota.avg              average budget left below      alerts.quota_alert_enabled
                       limits.avg_warning/critical_
                       threshold (% of the budget)
quota.peak             peak seconds left below        alerts.quota_alert_enabled
                       limits.peak_warning/critical_
                       threshold
scheduler.emergency    the emergency tier             alerts.quota_alert_enabled
quota.background       use outside the managed group  alerts.quota_alert_enabled
                       above what the windows allow
                       now (the planner bound)
system.cpu_high        CPU at or above                alerts.system_alert_enabled
                       alerts.cpu_high_threshold for
                       alerts.cpu_high_duration s
system.memory_high     memory at or above             alerts.system_alert_enabled
                       alerts.memory_high_threshold
system.disk_low        free disk below                alerts.system_alert_enabled
                       alerts.disk_low_threshold
monitoring.read_failed a reading failed 10 s running  alerts.system_alert_enabled
cgroup.write_failed    the group cap cannot be        always (safety)
                       written: CPU is not controlled
cgroup.cannot_control  no cgroup backend works (auto  always (safety)
                       fell back to dry-run)
reservation.not_       the windows leave less than a  alerts.reservation_alert_
honoured               reservation (or the floor)     enabled
====================== ============================== ==========================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts import service

logger = logging.getLogger(__name__)

READ_FAILURE_ALERT_S = 10
"""A sampler reading failing this many ticks in a row raises an alert."""

Verdict = tuple[str, str, str] | None
"""(severity, alert type, message) or None when the rule does not fire."""


@dataclass(frozen=True)
class Facts:
    """What the rules look at, gathered by the loop each tick."""

    avg_remaining_percent: float = 100.0
    peak_remaining_s: int = 0
    tier: str = "high"
    cpu_percent: float | None = None
    memory_percent: float | None = None
    disk_free_percent: float | None = None
    write_error: str | None = None
    degraded_reason: str | None = None
    bound: float = 100.0
    floor: float = 0.0
    reservation: str | None = None
    background: float | None = None
    read_failures: Mapping[str, int] = field(default_factory=dict)


class AlertRules:
    """Raises and resolves the scheduler's alerts as conditions change."""

    def __init__(
        self,
        params: Mapping[str, Any],
        raise_alert: Callable[..., Any] = service.raise_alert,
        resolve_alert: Callable[[str], int] = service.resolve_alert,
    ) -> None:
        self._raise = raise_alert
        self._resolve = resolve_alert
        self.active: dict[str, str] = {}
        self._high_since: float | None = None
        self._first = True
        self.configure(params)

    def configure(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)

    def evaluate(self, facts: Facts, now: float) -> dict[str, str]:
        """Apply every rule to ``facts`` (``now``: monotonic seconds)."""
        verdicts = {
            "quota.avg": self._avg(facts),
            "quota.peak": self._peak(facts),
            "scheduler.emergency": self._emergency(facts),
            "quota.background": self._background(facts),
            "system.cpu_high": self._cpu_high(facts, now),
            "system.memory_high": self._memory_high(facts),
            "system.disk_low": self._disk_low(facts),
            "monitoring.read_failed": self._read_failed(facts),
            "cgroup.write_failed": self._write_failed(facts),
            "cgroup.cannot_control": self._cannot_control(facts),
            "reservation.not_honoured": self._not_honoured(facts),
        }
        for key, verdict in verdicts.items():
            self._apply(key, verdict, facts)
        self._first = False
        return dict(self.active)

    def _apply(self, key: str, verdict: Verdict, facts: Facts) -> None:
        if not self.params.get("alerts.enabled", True):
            verdict = None
        if verdict is None:
            if key in self.active or self._first:
                self._resolve(key)
                self.active.pop(key, None)
            return
        severity, alert_type, message = verdict
        if self.active.get(key) == severity:
            return
        self._raise(key, alert_type, severity, message, _details(facts), self.params)
        self.active[key] = severity

    def _on(self, switch: str) -> bool:
        return bool(self.params.get(switch, True))

    # Rules ----------------------------------------------------------------

    def _avg(self, facts: Facts) -> Verdict:
        if not self._on("alerts.quota_alert_enabled"):
            return None
        left = facts.avg_remaining_percent
        for level in ("critical", "warning"):
            threshold = self.params[f"limits.avg_{level}_threshold"]
            if left < threshold:
                return (
                    level,
                    "quota",
                    f"Average budget nearly used: {left:.1f} % of it left "
                    f"(alert below {threshold:g} %); the cap is lowered to keep "
                    "the average rule",
                )
        return None

    def _peak(self, facts: Facts) -> Verdict:
        if not self._on("alerts.quota_alert_enabled"):
            return None
        if self.params["limits.peak_max_duration"] <= 0:
            return None
        left = facts.peak_remaining_s
        for level in ("critical", "warning"):
            if left < self.params[f"limits.peak_{level}_threshold"]:
                return (
                    level,
                    "quota",
                    f"Peak budget nearly used: {left} s at or above "
                    f"{self.params['limits.peak_threshold']:g} % left in the peak "
                    "window; the cap stays below the peak threshold",
                )
        return None

    def _emergency(self, facts: Facts) -> Verdict:
        if not self._on("alerts.quota_alert_enabled") or facts.tier != "emergency":
            return None
        return (
            "critical",
            "quota",
            f"Emergency tier: average budget {facts.avg_remaining_percent:.1f} % "
            f"left, cap held at {self.params['scheduler.emergency_cpu_limit']:g} % "
            "or less",
        )

    def _background(self, facts: Facts) -> Verdict:
        # The planner keeps every future second at no less than the
        # background estimate, so the bound stays above it while the rules
        # can carry it; below it, uncapped processes alone break the window.
        if not self._on("alerts.quota_alert_enabled") or facts.background is None:
            return None
        if facts.background <= facts.bound + 1e-6:
            return None
        return (
            "critical",
            "quota",
            f"Processes outside the managed group use {facts.background:.1f} %, "
            f"more than the {facts.bound:.1f} % the rules sustain now: the rule "
            "may break and cpusched cannot prevent it (move them into the "
            "group or stop them)",
        )

    def _cpu_high(self, facts: Facts, now: float) -> Verdict:
        threshold = self.params["alerts.cpu_high_threshold"]
        if facts.cpu_percent is None or facts.cpu_percent < threshold:
            self._high_since = None
            return None
        if self._high_since is None:
            self._high_since = now
        lasted = now - self._high_since
        if not self._on("alerts.system_alert_enabled"):
            return None
        if lasted < self.params["alerts.cpu_high_duration"]:
            return None
        return (
            "warning",
            "system",
            f"CPU at or above {threshold:g} % for {lasted:.0f} s",
        )

    def _memory_high(self, facts: Facts) -> Verdict:
        threshold = self.params["alerts.memory_high_threshold"]
        value = facts.memory_percent
        if not self._on("alerts.system_alert_enabled") or value is None:
            return None
        if value < threshold:
            return None
        return ("warning", "system", f"Memory use {value:.1f} % (>= {threshold:g} %)")

    def _disk_low(self, facts: Facts) -> Verdict:
        threshold = self.params["alerts.disk_low_threshold"]
        free = facts.disk_free_percent
        if not self._on("alerts.system_alert_enabled") or free is None:
            return None
        if free >= threshold:
            return None
        return (
            "warning",
            "system",
            f"Disk space low: {free:.1f} % free on the data disk (< {threshold:g} %)",
        )

    def _read_failed(self, facts: Facts) -> Verdict:
        failing = [
            name
            for name, streak in facts.read_failures.items()
            if streak >= READ_FAILURE_ALERT_S
        ]
        if not failing or not self._on("alerts.system_alert_enabled"):
            return None
        return (
            "warning",
            "monitoring",
            f"Sampling {', '.join(sorted(failing))} keeps failing; the last good "
            "values are used (see the scheduler log for the error)",
        )

    def _write_failed(self, facts: Facts) -> Verdict:
        if facts.write_error is None:
            return None
        return (
            "critical",
            "cgroup",
            f"CPU is not controlled: writing the group cap failed: {facts.write_error}",
        )

    def _cannot_control(self, facts: Facts) -> Verdict:
        if facts.degraded_reason is None:
            return None
        return ("critical", "cgroup", f"CPU is not controlled: {facts.degraded_reason}")

    def _not_honoured(self, facts: Facts) -> Verdict:
        if not self._on("alerts.reservation_alert_enabled"):
            return None
        if facts.bound >= facts.floor - 1e-6:
            return None
        what = (
            f"reservation {facts.reservation!r}"
            if facts.reservation
            else "the guaranteed floor"
        )
        return (
            "critical",
            "reservation",
            f"Cannot honour {what} ({facts.floor:.1f} %): the windows allow only "
            f"{facts.bound:.1f} % now, and the rules win",
        )


def _details(facts: Facts) -> dict[str, Any]:
    return {
        "avg_remaining_percent": round(facts.avg_remaining_percent, 3),
        "peak_remaining_s": facts.peak_remaining_s,
        "tier": facts.tier,
        "cpu_percent": facts.cpu_percent,
        "memory_percent": facts.memory_percent,
        "background_percent": facts.background,
    }
