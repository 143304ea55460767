"""Reservations: CPU guaranteed to a future time slot, once or recurring."""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from reservations.recurrence import Series


class Reservation(models.Model):
    """CPU reserved for a slot (``quota_reservations`` in the original design).

    One-off slots are stored in UTC. A recurring slot's ``start_time`` and
    ``end_time`` are its first occurrence; ``recurrence`` is an RFC 5545 RRULE
    expanded in ``time_zone`` so every occurrence keeps its wall-clock time.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    cpu_quota = models.FloatField(help_text="percent of the whole machine")
    priority = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(10)]
    )
    enabled = models.BooleanField(default=True)
    recurrence = models.TextField(blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    archived = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["start_time"]
        indexes = [
            models.Index(fields=["start_time", "end_time"]),
            models.Index(fields=["enabled"]),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def duration_s(self) -> int:
        """Real elapsed length of each slot, in seconds."""
        return int((self.end_time - self.start_time).total_seconds())

    @property
    def is_recurring(self) -> bool:
        return bool(self.recurrence.strip())

    def series(self) -> Series:
        """The slots as a pure :class:`~reservations.recurrence.Series`."""
        return Series(
            start=self.start_time.replace(microsecond=0),
            duration_s=self.duration_s,
            rule=self.recurrence,
            time_zone=self.time_zone or "UTC",
        )
