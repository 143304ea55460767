"""The scheduler's alert rules: raised on change, resolved when clear."""

from __future__ import annotations

from typing import Any

from alerts.rules import AlertRules, Facts
from tests.test_sampler import params


class Recorder:
    def __init__(self) -> None:
        self.raised: list[tuple[str, str, str]] = []
        self.resolved: list[str] = []

    def raise_alert(self, key, alert_type, severity, message, details, params) -> None:
        self.raised.append((key, severity, message))

    def resolve_alert(self, key: str) -> int:
        self.resolved.append(key)
        return 1


def rules(**changes: Any) -> tuple[AlertRules, Recorder]:
    recorder = Recorder()
    return (
        AlertRules(params(**changes), recorder.raise_alert, recorder.resolve_alert),
        recorder,
    )


def healthy(**changes: Any) -> Facts:
    values: dict[str, Any] = {"avg_remaining_percent": 50.0, "peak_remaining_s": 600}
    values.update(changes)
    return Facts(**values)


def test_an_average_budget_below_the_warning_threshold_raises_a_warning() -> None:
    alerts, recorder = rules()

    alerts.evaluate(healthy(avg_remaining_percent=4.0), now=0.0)

    assert recorder.raised[0][:2] == ("quota.avg", "warning")


def test_the_same_condition_is_raised_once_and_escalated_once() -> None:
    alerts, recorder = rules()

    alerts.evaluate(healthy(avg_remaining_percent=4.0), now=0.0)
    alerts.evaluate(healthy(avg_remaining_percent=3.5), now=1.0)
    alerts.evaluate(healthy(avg_remaining_percent=1.5), now=2.0)

    assert [r[:2] for r in recorder.raised] == [
        ("quota.avg", "warning"),
        ("quota.avg", "critical"),
    ]


def test_an_alert_is_resolved_when_its_condition_clears() -> None:
    alerts, recorder = rules()
    alerts.evaluate(healthy(avg_remaining_percent=1.0), now=0.0)
    recorder.resolved.clear()

    alerts.evaluate(healthy(), now=1.0)

    assert recorder.resolved == ["quota.avg"]
    assert alerts.active == {}


def test_high_cpu_alerts_only_after_the_configured_duration() -> None:
    alerts, recorder = rules(alerts__cpu_high_duration=300)

    alerts.evaluate(healthy(cpu_percent=95.0), now=0.0)
    alerts.evaluate(healthy(cpu_percent=95.0), now=299.0)
    early = list(recorder.raised)
    alerts.evaluate(healthy(cpu_percent=95.0), now=300.0)

    assert early == []
    assert recorder.raised[0][:2] == ("system.cpu_high", "warning")


def test_a_failed_cgroup_write_is_critical_even_with_system_alerts_off() -> None:
    alerts, recorder = rules(alerts__system_alert_enabled=False)

    alerts.evaluate(healthy(write_error="Permission denied: run as root"), now=0)

    assert recorder.raised == [
        (
            "cgroup.write_failed",
            "critical",
            "CPU is not controlled: writing the group cap failed: "
            "Permission denied: run as root",
        )
    ]


def test_a_dry_run_fallback_says_cpu_is_not_controlled() -> None:
    alerts, recorder = rules()

    alerts.evaluate(healthy(degraded_reason="No cgroup hierarchy"), now=0)

    assert recorder.raised[0][:2] == ("cgroup.cannot_control", "critical")


def test_a_reservation_the_windows_cannot_honour_is_reported_by_name() -> None:
    alerts, recorder = rules()

    alerts.evaluate(healthy(bound=12.0, floor=40.0, reservation="nightly"), now=0)

    key, severity, message = recorder.raised[0]
    assert (key, severity) == ("reservation.not_honoured", "critical")
    assert "reservation 'nightly' (40.0 %)" in message


def test_switched_off_quota_alerts_stay_quiet() -> None:
    alerts, recorder = rules(alerts__quota_alert_enabled=False)

    alerts.evaluate(healthy(avg_remaining_percent=0.5, tier="emergency"), now=0)

    assert recorder.raised == []


def test_alerts_enabled_off_silences_every_rule() -> None:
    alerts, recorder = rules(alerts__enabled=False)

    alerts.evaluate(healthy(write_error="boom", memory_percent=99.0), now=0)

    assert recorder.raised == []


def test_a_background_above_the_bound_raises_a_critical_quota_alert() -> None:
    alerts, recorder = rules()

    alerts.evaluate(healthy(bound=40.0, background=12.5), now=0)
    alerts.evaluate(healthy(bound=9.0, background=12.5), now=1)

    assert len(recorder.raised) == 1
    key, severity, message = recorder.raised[0]
    assert (key, severity) == ("quota.background", "critical")
    assert "outside the managed group use 12.5 %" in message
    assert "more than the 9.0 % the rules sustain" in message


def test_an_unknown_background_raises_nothing() -> None:
    alerts, recorder = rules()

    alerts.evaluate(healthy(bound=0.0, floor=0.0, background=None), now=0)

    assert recorder.raised == []
