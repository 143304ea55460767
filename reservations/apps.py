from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReservationsConfig(AppConfig):
    name = "reservations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from reservations.tasks import ensure_schedule

        post_migrate.connect(ensure_schedule, sender=self)
