"""Background jobs django-q2 runs for reservations."""

from __future__ import annotations

from reservations.service import archive_expired

SCHEDULE_NAME = "reservations-archive"
SCHEDULE_FUNC = "reservations.tasks.archive"
SCHEDULE_MINUTES = 5


def archive() -> int:
    """Archive reservations whose last slot has ended (see
    :func:`reservations.service.archive_expired`)."""
    return archive_expired()


def ensure_schedule(**_kwargs) -> None:
    """Create or update the archiving schedule (after every migrate)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": SCHEDULE_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": SCHEDULE_MINUTES,
            "repeats": -1,
        },
    )
