"""Alerts raised by the scheduler and the web process."""

from __future__ import annotations

from django.db import models


class Alert(models.Model):
    """One alert, deduplicated by ``key`` while it is open."""

    SEVERITIES = [(s, s) for s in ("info", "warning", "critical", "emergency")]

    timestamp = models.DateTimeField(db_index=True)
    last_seen = models.DateTimeField()
    key = models.CharField(max_length=200, db_index=True)
    alert_type = models.CharField(max_length=50, db_index=True)
    severity = models.CharField(max_length=10, choices=SEVERITIES, db_index=True)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    count = models.PositiveIntegerField(default=1)
    acknowledged = models.BooleanField(default=False, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    resolved = models.BooleanField(default=False, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp"]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message}"
