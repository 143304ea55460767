"""/health for monitors and /metrics for Prometheus."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.service import raise_alert
from cpusched import config
from cpusched.apikeys import create_key
from monitoring import live
from monitoring.broadcaster import broadcaster
from monitoring.models import LiveState

pytestmark = pytest.mark.django_db


def write_live(age_s: float = 0.0, **data: object) -> None:
    LiveState.objects.update_or_create(
        id=1,
        defaults={
            "updated_at": timezone.now() - timedelta(seconds=age_s),
            "data": data,
            "pid": 4242,
        },
    )


def scrape(client: Client | None = None) -> dict[str, float]:
    """Every sample of /metrics by name plus labels, e.g. ``x{a="b"}``."""
    response = (client or Client()).get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            samples[name] = sample.value
    return samples


# -- /health --------------------------------------------------------------------


def test_health_is_ok_with_a_fresh_heartbeat_and_open_without_login():
    write_live(age_s=1)

    response = Client().get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True}
    assert 1 <= body["scheduler"]["heartbeat_age"] < 5
    assert body["scheduler"]["pid"] == 4242


def test_health_is_503_when_the_heartbeat_is_stale():
    write_live(age_s=live.STALE_AFTER_S + 10)

    response = Client().get("/health")

    assert response.status_code == 503
    assert response.json()["scheduler"]["ok"] is False
    assert "runscheduler stopped or stuck" in response.json()["scheduler"]["error"]


def test_health_is_503_right_after_a_clean_stop():
    write_live(age_s=0, stopped=True)

    response = Client().get("/health")

    assert response.status_code == 503
    assert response.json()["scheduler"]["error"] == "runscheduler was stopped"


def test_health_is_503_before_any_heartbeat():
    response = Client().get("/health")

    assert response.status_code == 503
    assert response.json()["scheduler"]["heartbeat_age"] is None


def test_health_is_503_when_the_database_fails(monkeypatch):
    def broken():
        raise OperationalError("database is locked")

    monkeypatch.setattr(live, "read", broken)

    response = Client().get("/health")

    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "database is locked"}


def test_health_is_never_rate_limited():
    config.apply({"server.rate_limit_requests": 2})
    write_live()

    codes = {Client().get("/health").status_code for _ in range(5)}

    assert codes == {200}


def test_health_refuses_writes():
    assert Client().post("/health").status_code == 405


# -- /metrics -------------------------------------------------------------------


def test_metrics_expose_cpu_cap_windows_budgets_and_heartbeat():
    write_live(
        cpu_usage=42.5,
        cap=80.0,
        avg_mean=20.0,
        avg_remaining_cpu_s=1234.0,
        peak_used_s=100,
        peak_remaining_s=500,
        run_time_at_100=None,
        mode="balanced",
        tier="high",
    )

    samples = scrape()

    assert samples["cpusched_cpu_usage_percent"] == 42.5
    assert samples["cpusched_cap_percent"] == 80.0
    assert samples["cpusched_avg_window_mean_percent"] == 20.0
    assert samples["cpusched_avg_limit_percent"] == 30.0
    assert samples["cpusched_avg_headroom_percent"] == 10.0
    assert samples["cpusched_avg_budget_remaining_cpu_seconds"] == 1234.0
    assert samples["cpusched_peak_used_seconds"] == 100
    assert samples["cpusched_peak_remaining_seconds"] == 500
    assert samples["cpusched_peak_budget_seconds"] == 600
    assert samples["cpusched_run_time_at_100_seconds"] == float("inf")
    assert samples["cpusched_scheduler_up"] == 1
    assert samples["cpusched_heartbeat_age_seconds"] < 5
    assert samples['cpusched_quota_status{status="normal"}'] == 1
    assert samples['cpusched_scheduler_info{mode="balanced",tier="high"}'] == 1


def test_metrics_leave_out_figures_the_scheduler_has_not_written():
    samples = scrape()

    assert samples["cpusched_scheduler_up"] == 0
    assert "cpusched_cpu_usage_percent" not in samples
    assert "cpusched_heartbeat_age_seconds" not in samples


def test_metrics_count_open_alerts_by_severity():
    raise_alert("quota.avg", "quota", "warning", "Average budget low")
    raise_alert("quota.peak", "quota", "critical", "Peak budget low")

    samples = scrape()

    assert samples['cpusched_alerts_open{severity="warning"}'] == 1
    assert samples['cpusched_alerts_open{severity="critical"}'] == 1
    assert samples['cpusched_alerts_open{severity="emergency"}'] == 0


def test_metrics_expose_dropped_websocket_messages(monkeypatch):
    monkeypatch.setitem(broadcaster.stats.dropped, "monitoring", 7)

    samples = scrape()

    assert samples['cpusched_websocket_messages_dropped_total{group="monitoring"}'] == 7


def test_metrics_report_a_failing_database_instead_of_failing(monkeypatch):
    def broken():
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(live, "read", broken)

    samples = scrape()

    assert samples["cpusched_database_up"] == 0


def test_metrics_need_credentials_when_not_public():
    config.apply({"server.metrics_public": False})
    user = User.objects.create_user("prometheus", password="pw-prom-1")
    _, secret = create_key(user, "scraper")

    anonymous = Client().get("/metrics")
    with_key = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/metrics")

    assert anonymous.status_code == 401
    assert with_key.status_code == 200


def test_metrics_are_open_when_authentication_is_off():
    config.apply({"server.metrics_public": False, "server.auth_enabled": False})

    assert Client().get("/metrics").status_code == 200
