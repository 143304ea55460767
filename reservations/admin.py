"""Reservations in the Django admin, checked like the pages and the API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from reservations import service
from reservations.forms import AdminForm
from reservations.models import Reservation
from reservations.service import ReservationError


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    form = AdminForm
    list_display = (
        "name",
        "start_time",
        "end_time",
        "cpu_quota",
        "priority",
        "recurrence",
        "enabled",
        "archived",
    )
    list_filter = ("enabled", "archived", "priority")
    search_fields = ("name", "description")
    readonly_fields = (
        "time_zone",
        "archived",
        "archived_at",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
    )

    def save_model(
        self, request: HttpRequest, obj: Reservation, form: AdminForm, change: bool
    ) -> None:
        """Store through the service (the form's clean step already reviewed)."""
        try:
            saved, report = form.save_reviewed(request.user.get_username())
        except ReservationError as exc:
            # Another change slipped in after the review; nothing was stored.
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = saved.pk
        obj.refresh_from_db()
        for notice in report.notices:
            self.message_user(request, notice, messages.WARNING)

    def delete_model(self, request: HttpRequest, obj: Reservation) -> None:
        service.delete(obj, request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for reservation in queryset:
            service.delete(reservation, request.user.get_username())
