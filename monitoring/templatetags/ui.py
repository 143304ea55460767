"""Small template helpers shared by every page: navigation, units, page config."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

register = template.Library()


@register.simple_tag
def active(request: HttpRequest, prefix: str, exact: bool = False) -> str:
    """``active`` when the current page is under ``prefix`` (for nav links)."""
    path = request.path
    hit = path == prefix if exact else path.startswith(prefix)
    return "active" if hit else ""


@register.simple_tag
def active_alert_count() -> int:
    """Open, unacknowledged alerts, shown as a badge in the navigation bar."""
    from alerts.models import Alert

    return Alert.objects.filter(resolved=False, acknowledged=False).count()


@register.simple_tag
def signed_in(request: HttpRequest) -> bool:
    """True when the pages are open to this visitor (a user, or auth is off)."""
    from cpusched.views import auth_enabled

    return bool(request.user.is_authenticated) or not auth_enabled()


@register.simple_tag
def page_config(request: HttpRequest) -> dict[str, Any]:
    """What every page's scripts need: time zone, server clock, socket paths."""
    return {
        "timeZone": settings.TIME_ZONE,
        "serverNowMs": int(timezone.now().timestamp() * 1000),
        "alertsSocket": "/ws/alerts",
        "monitoringSocket": "/ws/monitoring",
        "authenticated": signed_in(request),
    }


@register.filter
def duration(seconds: Any) -> str:
    """Seconds as a short human duration: ``45 s``, ``12 min``, ``3 h 20 min``."""
    if seconds is None or seconds == "":
        return "–"
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return "–"
    if total < 0:
        return "–"
    if total < 120:
        return f"{total} s"
    minutes = total // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def percent(value: Any, digits: int = 1) -> str:
    """A percentage with a fixed number of decimals, or a dash when unknown."""
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):.{int(digits)}f} %"
    except (TypeError, ValueError):
        return "–"


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    """``mapping[key]`` for templates (missing keys give None)."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def points(value: Any) -> str:
    """Percentage points of CPU (a difference of two percentages)."""
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):.2f} pt"
    except (TypeError, ValueError):
        return "–"


@register.simple_tag
def run_time(current: dict[str, Any]) -> str:
    """How long the machine may run at 100 %: null means without limit."""
    if not current.get("scheduler_running"):
        return "–"
    seconds = current.get("run_time_at_100")
    return "no limit" if seconds is None else duration(seconds)
