"""Raising, deduplicating, limiting and delivering alerts."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail

from alerts import notify, service
from alerts.models import Alert
from cpusched import config

pytestmark = pytest.mark.django_db


def test_raising_the_same_key_twice_updates_one_open_alert():
    service.raise_alert("quota.avg", "quota", "warning", "Average budget 4 % left")
    service.raise_alert("quota.avg", "quota", "critical", "Average budget 1 % left")

    alert = Alert.objects.get()
    assert alert.count == 2
    assert alert.severity == "critical"
    assert alert.message == "Average budget 1 % left"


def test_a_resolved_alert_is_reopened_as_a_new_row():
    service.raise_alert("cpu.high", "system", "warning", "CPU high")
    assert service.resolve_alert("cpu.high") == 1

    service.raise_alert("cpu.high", "system", "warning", "CPU high again")

    assert Alert.objects.filter(resolved=False).count() == 1
    assert Alert.objects.count() == 2


def test_new_alerts_stop_at_the_hourly_limit():
    params = {"alerts.max_alerts_per_hour": 3}
    for i in range(5):
        service.raise_alert(f"k{i}", "system", "warning", f"alert {i}", params=params)

    assert Alert.objects.count() == 3


def test_switched_off_alerts_store_nothing():
    result = service.raise_alert(
        "k", "system", "warning", "m", params={"alerts.enabled": False}
    )

    assert result is None
    assert Alert.objects.count() == 0


def test_an_unknown_severity_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="expected one of info, warning"):
        service.raise_alert("k", "system", "loud", "m")


def test_email_delivery_sends_to_every_recipient(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    config.apply({"alerts.notify_email": True, "alerts.email_to": "a@x.org, b@x.org"})
    alert = service.raise_alert("k", "quota", "critical", "Budget <gone>")

    sent = notify.deliver(alert.id)

    assert sent == ["email"]
    assert mail.outbox[0].to == ["a@x.org", "b@x.org"]
    assert "[cpusched critical] Budget <gone>" == mail.outbox[0].subject


class _Recorder(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers["Content-Length"])
        _Recorder.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_delivery_posts_the_alert_as_json():
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    config.apply({"alerts.notify_webhook": True, "alerts.webhook_url": url})
    alert = service.raise_alert("k", "quota", "warning", "Peak 100 s left")

    sent = notify.deliver(alert.id)

    thread.join(5)
    server.server_close()
    assert sent == ["webhook"]
    assert _Recorder.bodies[-1]["level"] == "warning"
    assert _Recorder.bodies[-1]["message"] == "Peak 100 s left"


def test_a_stale_heartbeat_raises_scheduler_down_and_a_fresh_one_resolves_it():
    from datetime import timedelta

    from django.utils import timezone

    from alerts import tasks
    from monitoring.models import LiveState

    stale = timezone.now() - timedelta(seconds=90)
    LiveState.objects.create(id=1, updated_at=stale, data={})

    assert tasks.check_scheduler() is False
    alert = Alert.objects.get(key=tasks.SCHEDULER_DOWN_KEY)
    assert alert.severity == "critical"
    assert "heartbeat is 90 s old" in alert.message

    LiveState.objects.filter(id=1).update(updated_at=timezone.now())
    assert tasks.check_scheduler() is True
    alert.refresh_from_db()
    assert alert.resolved is True


def test_a_slot_starting_within_the_notice_gets_one_info_alert():
    from datetime import timedelta

    from django.utils import timezone

    from alerts import tasks
    from reservations.models import Reservation

    start = timezone.now().replace(microsecond=0) + timedelta(minutes=10)
    Reservation.objects.create(
        name="backup",
        start_time=start,
        end_time=start + timedelta(hours=1),
        cpu_quota=40,
    )

    tasks.check_reservations()
    tasks.check_reservations()

    alert = Alert.objects.get(alert_type="reservation")
    assert alert.message == "Reservation 'backup' starts in 10 min at 40 %"
    assert alert.count == 2
