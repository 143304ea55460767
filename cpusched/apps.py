from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CpuschedConfig(AppConfig):
    name = "cpusched"
    verbose_name = "Configuration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cpusched.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
