"""Delivery of alerts by email and webhook, run by the django-q2 worker.

The scheduler only stores the alert and queues :func:`deliver`; the worker
sends it, and django-q2 retries a failed delivery (``Q_CLUSTER`` retry and
max_attempts in the settings). A delivery that raises is retried; one that
is switched off or has no recipient is skipped with a log line.
"""

from __future__ import annotations

import json
import logging
import urllib.request

from django.conf import settings
from django.core.mail import send_mail

from alerts.models import Alert
from cpusched import config

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10


def payload(alert: Alert) -> dict:
    """The JSON body posted to webhooks (the /ws/alerts message shape)."""
    return {
        "type": "alert",
        "id": alert.id,
        "level": alert.severity,
        "alert_type": alert.alert_type,
        "message": alert.message,
        "details": alert.details,
        "count": alert.count,
        "timestamp": alert.timestamp.isoformat(),
    }


def deliver(alert_id: int) -> list[str]:
    """Send one alert through every enabled channel; return the channels used."""
    alert = Alert.objects.filter(id=alert_id).first()
    if alert is None:
        logger.warning("Alert %s vanished before delivery", alert_id)
        return []

    params = config.snapshot()
    sent = []
    if params["alerts.notify_email"]:
        if send_email(alert, params["alerts.email_to"]):
            sent.append("email")
    if params["alerts.notify_webhook"]:
        if post_webhook(alert, params["alerts.webhook_url"]):
            sent.append("webhook")
    return sent


def send_email(alert: Alert, recipients: str) -> bool:
    to = [r.strip() for r in recipients.split(",") if r.strip()]
    if not to:
        logger.warning("Email alerts are on but alerts.email_to is empty")
        return False
    subject = f"[cpusched {alert.severity}] {alert.message}"[:200]
    body = json.dumps(payload(alert), indent=2, ensure_ascii=False)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
    return True


def post_webhook(alert: Alert, url: str) -> bool:
    if not url.startswith(("http://", "https://")):
        logger.warning(
            "Webhook alerts are on but alerts.webhook_url %r is not a http(s) URL", url
        )
        return False
    body = json.dumps(payload(alert)).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
        if response.status >= 300:
            raise RuntimeError(f"Webhook {url} answered {response.status}")
    return True
