"""The background jobs django-q2 runs, created or updated after every migrate."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# name -> (function, minutes between runs, or a parameter giving hours)
JOBS = {
    "cpusched-housekeeping": ("monitoring.tasks.housekeeping", 60, None),
    "cpusched-vacuum": ("monitoring.tasks.vacuum", None, "database.vacuum_interval"),
    "cpusched-scheduler-heartbeat": ("alerts.tasks.check_scheduler", 1, None),
    "cpusched-reservation-notice": ("alerts.tasks.check_reservations", 1, None),
}


def ensure_schedules(**_kwargs) -> None:
    """Create missing schedules and bring intervals in line with parameters."""
    from django_q.models import Schedule

    from cpusched import config

    params = config.snapshot()
    for name, (func, minutes, hours_key) in JOBS.items():
        if hours_key:
            minutes = int(params[hours_key]) * 60
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
