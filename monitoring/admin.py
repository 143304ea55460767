"""Admin for samples and the live state: measurements are viewed, not edited."""

from __future__ import annotations

from django.contrib import admin

from cpusched.admin import ReadOnlyAdmin
from monitoring.models import LiveState, Sample, SampleAggregate


@admin.register(Sample)
class SampleAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "cpu_usage",
        "group_cpu",
        "cpu_limit",
        "memory_usage",
        "is_peak",
        "source",
    )
    list_filter = ("source", "is_peak", ("timestamp", admin.DateFieldListFilter))
    ordering = ("-timestamp",)
    # A month of one-second rows is millions: counting them all on every page
    # would dominate the page time.
    show_full_result_count = False


@admin.register(SampleAggregate)
class SampleAggregateAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "seconds",
        "cpu_usage",
        "cpu_max",
        "peak_seconds",
        "cpu_limit",
    )
    list_filter = (("timestamp", admin.DateFieldListFilter),)
    ordering = ("-timestamp",)
    show_full_result_count = False


@admin.register(LiveState)
class LiveStateAdmin(ReadOnlyAdmin):
    list_display = ("id", "updated_at", "started_at", "pid")
    readonly_fields = ("id", "updated_at", "started_at", "pid", "data")
