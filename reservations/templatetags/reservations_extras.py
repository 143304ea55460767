"""Template filters of the reservation pages."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def cpu_hours(cpu_s: Any) -> str:
    """Whole-machine CPU-seconds in readable units: ``2.3 CPU-h``."""
    try:
        seconds = float(cpu_s)
    except (TypeError, ValueError):
        return "–"
    if abs(seconds) >= 360:
        return f"{seconds / 3600:.1f} CPU-h"
    if abs(seconds) >= 60:
        return f"{seconds / 60:.0f} CPU-min"
    return f"{seconds:.0f} CPU-s"
