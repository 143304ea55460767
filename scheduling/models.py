"""The decision log and the scheduler's event log."""

from __future__ import annotations

from django.db import models


class Decision(models.Model):
    """A change of cap or tier, with why (``schedule_logs`` in the design)."""

    ACTIONS = [(a, a) for a in ("increase", "decrease", "maintain")]

    timestamp = models.DateTimeField(db_index=True)
    cpu_limit = models.FloatField(help_text="cap for the whole machine, %")
    group_limit = models.FloatField(null=True, blank=True)
    bound = models.FloatField(null=True, blank=True)
    avg_12h = models.FloatField(null=True, blank=True)
    avg_quota_remaining = models.FloatField(null=True, blank=True)
    peak_24h = models.FloatField(null=True, blank=True)
    peak_quota_remaining = models.FloatField(null=True, blank=True)
    available_quota = models.FloatField(null=True, blank=True)
    reservation_id = models.CharField(max_length=64, blank=True, db_index=True)
    action = models.CharField(max_length=10, choices=ACTIONS)
    tier = models.CharField(max_length=20, blank=True)
    reason = models.TextField(blank=True)
    scheduler_mode = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["-timestamp"]

    def __str__(self) -> str:
        return f"{self.timestamp:%H:%M:%S} cap {self.cpu_limit:.1f} %: {self.reason}"


class Event(models.Model):
    """Something the scheduler did or noticed: start, stop, gap, clock step."""

    timestamp = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=40, db_index=True)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-timestamp"]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.kind}: {self.message}"
