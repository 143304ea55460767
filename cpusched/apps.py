from django.apps import AppConfig


class CpuschedConfig(AppConfig):
    name = "cpusched"
    verbose_name = "Configuration"
    default_auto_field = "django.db.models.BigAutoField"
