"""Admin for the decision log and the scheduler's events (both read-only)."""

from __future__ import annotations

from django.contrib import admin

from cpusched.admin import ReadOnlyAdmin
from scheduling.models import Decision, Event


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "action",
        "cpu_limit",
        "bound",
        "tier",
        "scheduler_mode",
        "avg_quota_remaining",
        "peak_quota_remaining",
        "reason",
    )
    list_filter = ("action", "tier", "scheduler_mode")
    search_fields = ("reason", "reservation_id")
    date_hierarchy = "timestamp"
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "kind", "message")
    list_filter = ("kind",)
    search_fields = ("message",)
    date_hierarchy = "timestamp"
