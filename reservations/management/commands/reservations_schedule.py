"""Create or update the django-q2 schedule that archives expired reservations.

``migrate`` does this already; the command repairs a deleted or edited
schedule, and ``--run`` archives at once.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from reservations.service import archive_expired
from reservations.tasks import SCHEDULE_MINUTES, SCHEDULE_NAME, ensure_schedule


class Command(BaseCommand):
    help = "Create the schedule that archives expired reservations"

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--run", action="store_true", help="also archive expired ones now"
        )

    def handle(self, *args, **options) -> str:
        ensure_schedule()
        self.stdout.write(
            f"Schedule {SCHEDULE_NAME!r}: archive expired reservations every "
            f"{SCHEDULE_MINUTES} minutes"
        )
        if options["run"]:
            count = archive_expired()
            self.stdout.write(f"Archived {count} expired reservation(s)")
        return ""
