"""Raising and resolving alerts, with deduplication and rate limiting.

An alert is identified by its ``key`` (for example ``quota.avg``): while an
alert with that key is open (not resolved), raising it again updates that row
(count, last seen, message, a higher severity) instead of adding a new one.
At most ``alerts.max_alerts_per_hour`` new rows are created per hour; beyond
that, repeats are only counted on the newest open alert and logged. Alert
types silenced by an operator (``alerts.silence_duration`` after an
acknowledgement) are still recorded but not notified.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from alerts.models import Alert

logger = logging.getLogger(__name__)

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2, "emergency": 3}


def raise_alert(
    key: str,
    alert_type: str,
    severity: str,
    message: str,
    details: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Alert | None:
    """Open or refresh the alert ``key``; return it, or None when switched off."""
    params = params or {}
    if not params.get("alerts.enabled", True):
        return None
    if severity not in SEVERITY_RANK:
        raise ValueError(
            f"Unknown severity {severity!r}: expected one of {', '.join(SEVERITY_RANK)}"
        )

    now = timezone.now()
    with transaction.atomic():
        open_alert = Alert.objects.filter(key=key, resolved=False).first()
        if open_alert is not None:
            return _refresh(open_alert, severity, message, details, now)
        if _over_hourly_limit(params, now):
            logger.warning("Alert limit reached, not recording: %s", message)
            return None
        alert = Alert.objects.create(
            key=key,
            alert_type=alert_type,
            severity=severity,
            message=message,
            details=details or {},
            timestamp=now,
            last_seen=now,
        )
    _log(alert)
    _notify(alert, params)
    return alert


def _refresh(alert: Alert, severity: str, message: str, details, now) -> Alert:
    escalated = SEVERITY_RANK[severity] > SEVERITY_RANK[alert.severity]
    alert.count += 1
    alert.last_seen = now
    alert.message = message
    if details is not None:
        alert.details = details
    if escalated:
        alert.severity = severity
        alert.acknowledged = False
    alert.save()
    if escalated:
        _log(alert)
    return alert


def _over_hourly_limit(params: dict[str, Any], now) -> bool:
    limit = params.get("alerts.max_alerts_per_hour", 20)
    since = now - timedelta(hours=1)
    return Alert.objects.filter(timestamp__gte=since).count() >= limit


def _log(alert: Alert) -> None:
    level = logging.WARNING if alert.severity in ("info", "warning") else logging.ERROR
    logger.log(level, "Alert [%s] %s", alert.severity, alert.message)


def _notify(alert: Alert, params: dict[str, Any]) -> None:
    """Hand the alert to the background worker for email and webhook delivery."""
    if not (params.get("alerts.notify_email") or params.get("alerts.notify_webhook")):
        return
    try:
        from django_q.tasks import async_task

        async_task("alerts.notify.deliver", alert.id)
    except Exception:  # the queue is a convenience; the alert row is stored
        logger.exception("Could not queue notification for alert %s", alert.id)


def resolve_alert(key: str) -> int:
    """Mark the open alert ``key`` resolved; return how many rows changed."""
    return Alert.objects.filter(key=key, resolved=False).update(
        resolved=True, resolved_at=timezone.now()
    )


def acknowledge(alert: Alert, user: str) -> None:
    alert.acknowledged = True
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = user
    alert.save(update_fields=["acknowledged", "acknowledged_at", "acknowledged_by"])
