"""Admin for alerts: read them, acknowledge them, resolve them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from alerts.models import Alert
from alerts.service import acknowledge


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "timestamp",
        "severity",
        "alert_type",
        "message",
        "count",
        "last_seen",
        "acknowledged",
        "resolved",
    )
    list_filter = ("severity", "alert_type", "acknowledged", "resolved")
    search_fields = ("message", "key")
    date_hierarchy = "timestamp"
    actions = ["acknowledge_selected", "resolve_selected"]
    readonly_fields = [f.name for f in Alert._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge_selected(self, request, queryset):
        pending = queryset.filter(acknowledged=False)
        count = 0
        for alert in pending:
            acknowledge(alert, request.user.get_username())
            count += 1
        messages.success(request, f"{count} alert(s) acknowledged")

    @admin.action(description="Resolve the selected alerts")
    def resolve_selected(self, request, queryset):
        count = queryset.filter(resolved=False).update(
            resolved=True, resolved_at=timezone.now()
        )
        messages.success(request, f"{count} alert(s) resolved")
