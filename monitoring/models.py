"""Samples of the machine, their downsampled form, and the live state row."""

from __future__ import annotations

from django.db import models


class Sample(models.Model):
    """One second of measurements (``monitoring_data`` in the original design).

    ``cpu_usage`` is the whole machine's CPU in percent of all its CPUs, raw as
    measured: it is what the provider sees and what the windows count.
    ``source`` tells measured seconds from seconds filled in after a gap.
    """

    MEASURED = "measured"
    FILLED = "filled"
    ASSUMED = "assumed"
    SOURCES = [
        (MEASURED, "measured"),
        (FILLED, "filled from cumulative counters"),
        (ASSUMED, "assumed across a reboot"),
    ]

    timestamp = models.DateTimeField(unique=True)
    cpu_usage = models.FloatField()
    memory_usage = models.FloatField(default=0)
    disk_io_read = models.FloatField(default=0, help_text="bytes per second")
    disk_io_write = models.FloatField(default=0, help_text="bytes per second")
    network_in = models.FloatField(default=0, help_text="bytes per second")
    network_out = models.FloatField(default=0, help_text="bytes per second")
    group_cpu = models.FloatField(null=True, blank=True)
    cpu_limit = models.FloatField(null=True, blank=True)
    is_peak = models.BooleanField(default=False)
    source = models.CharField(max_length=10, choices=SOURCES, default=MEASURED)

    class Meta:
        ordering = ["timestamp"]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} cpu {self.cpu_usage:.1f} %"


class SampleAggregate(models.Model):
    """Samples older than ``database.downsample_after_days``, one row per period."""

    timestamp = models.DateTimeField(unique=True)
    seconds = models.PositiveIntegerField()
    cpu_usage = models.FloatField(help_text="mean")
    cpu_max = models.FloatField()
    peak_seconds = models.PositiveIntegerField()
    memory_usage = models.FloatField(default=0)
    disk_io_read = models.FloatField(default=0)
    disk_io_write = models.FloatField(default=0)
    network_in = models.FloatField(default=0)
    network_out = models.FloatField(default=0)
    cpu_limit = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["timestamp"]


class LiveState(models.Model):
    """The scheduler's current figures, one row rewritten every second.

    ``updated_at`` doubles as the scheduler's heartbeat.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    updated_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    data = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"live state at {self.updated_at:%H:%M:%S}"
