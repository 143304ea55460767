"""The dashboard and alerts pages, and the HTMX fragments they load.

The dashboard renders its figures from the live state row, so they are right
at first paint; its charts load history from ``/api/monitoring/history``
(downsampled in SQL) and then follow ``/ws/monitoring`` once a second (see
docs/web.md).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alerts.models import Alert
from alerts.service import acknowledge
from cpusched import runtime
from cpusched.views import login_required
from monitoring import live

logger = logging.getLogger(__name__)

ALERTS_PER_PAGE = 50


def _epoch(moment: datetime | None = None) -> int:
    return int((moment or timezone.now()).timestamp())


# The memory, disk and network panel's ranges, in seconds.
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The home page: status bar, quota cards and four chart areas.

    Figures come from the live state row so the page is right at first
    paint; the charts load their history from ``/api/monitoring/history``
    and follow ``/ws/monitoring`` after that.
    """
    params = runtime.params()
    row = live.read()
    current = live.current(row, params)
    settings = {
        "staleAfterS": live.STALE_AFTER_S,
        "maxPoints": params["performance.chart_max_points"],
        "avgMax": params["limits.avg_max_usage"],
        "avgWarning": params["limits.avg_warning_threshold"],
        "avgCritical": params["limits.avg_critical_threshold"],
        "avgWindowS": round(params["limits.avg_window_hours"] * 3600),
        "peakBudget": params["limits.peak_max_duration"],
        "peakWarning": params["limits.peak_warning_threshold"],
        "peakCritical": params["limits.peak_critical_threshold"],
        "peakThreshold": params["limits.peak_threshold"],
        "peakWindowS": round(params["limits.peak_window_hours"] * 3600),
        "historyUrl": "/api/monitoring/history",
    }
    context = {
        "live": current,
        "params": params,
        "settings": settings,
        "live_json": current,
        "open_alerts": Alert.objects.filter(resolved=False).count(),
        "range": "1h",
        "range_seconds": RANGES["1h"],
        "ranges": list(RANGES),
    }
    return render(request, "monitoring/dashboard.html", context)


@login_required
@require_GET
def resources_panel(request: HttpRequest) -> HttpResponse:
    """The memory, disk and network panel for one range (1h, 6h or 24h)."""
    range_name = request.GET.get("range", "1h")
    if range_name not in RANGES:
        message = f"range={range_name!r} is not allowed: use one of 1h, 6h, 24h"
        return HttpResponse(message, status=400, content_type="text/plain")
    context = {
        "range": range_name,
        "range_seconds": RANGES[range_name],
        "ranges": list(RANGES),
    }
    return render(request, "partials/resources.html", context)


def _alerts_query(state: str):
    alerts = Alert.objects.all()
    if state == "active":
        return alerts.filter(resolved=False)
    if state == "unacknowledged":
        return alerts.filter(resolved=False, acknowledged=False)
    if state == "resolved":
        return alerts.filter(resolved=True)
    return alerts


ALERT_STATES = ("active", "unacknowledged", "resolved", "all")


def _alerts_context(request: HttpRequest) -> dict[str, Any]:
    state = request.GET.get("state", "active")
    if state not in ALERT_STATES:
        state = "active"
    severity = request.GET.get("severity", "")
    alerts = _alerts_query(state)
    if severity in dict(Alert.SEVERITIES):
        alerts = alerts.filter(severity=severity)
    else:
        severity = ""
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(request.GET.get("page"))
    return {
        "page": page,
        "state": state,
        "severity": severity,
        "states": ALERT_STATES,
        "severities": [name for name, _ in Alert.SEVERITIES],
    }


@login_required
@require_GET
def alerts_page(request: HttpRequest) -> HttpResponse:
    """Alert history with filters; open alerts can be acknowledged."""
    return render(request, "monitoring/alerts.html", _alerts_context(request))


@login_required
@require_GET
def alerts_table(request: HttpRequest) -> HttpResponse:
    """The alerts table alone, polled by the alerts page."""
    return render(request, "partials/alerts_table.html", _alerts_context(request))


@login_required
@require_GET
def alerts_count(request: HttpRequest) -> HttpResponse:
    """The navigation bar's badge of open, unacknowledged alerts."""
    count = Alert.objects.filter(resolved=False, acknowledged=False).count()
    return render(request, "partials/alerts_badge.html", {"count": count})


@login_required
@require_POST
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """Acknowledge one alert; answer with its updated table row."""
    alert = get_object_or_404(Alert, pk=pk)
    if not alert.acknowledged:
        acknowledge(alert, request.user.get_username())
        logger.info("Alert %s acknowledged by %s", alert.pk, request.user)
    response = render(request, "partials/alert_row.html", {"alert": alert})
    response["HX-Trigger"] = "alerts-changed"
    return response
