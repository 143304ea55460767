"""The reservation pages: list, form with live checks, calendar, analysis.

Every change goes through :mod:`reservations.service`, so the pages refuse
exactly what the API and the admin refuse, with the same messages. Access is
guarded by the site's login middleware (or open when the operator turned
authentication off), like every other page.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from reservations import analysis, preview, service
from reservations.forms import ReservationForm
from reservations.models import Reservation
from reservations.recurrence import RecurrenceError, parse_rule, resolve_local, zone
from reservations.service import Draft, ReservationError

logger = logging.getLogger(__name__)

STATUSES = ("active", "future", "expired")
PALETTE = (
    "#0d6efd",
    "#d63384",
    "#198754",
    "#fd7e14",
    "#6f42c1",
    "#20c997",
    "#dc3545",
    "#0dcaf0",
    "#6610f2",
    "#ffc107",
    "#795548",
    "#607d8b",
)
WEEKDAY_NAMES = {
    "MO": "Mon",
    "TU": "Tue",
    "WE": "Wed",
    "TH": "Thu",
    "FR": "Fri",
    "SA": "Sat",
    "SU": "Sun",
}


def _user(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    return user.get_username() if user is not None and user.is_authenticated else ""


# -- list ---------------------------------------------------------------------


def describe_rule(text: str) -> str:
    """A rule in words: ``every 2 weeks on Mon, Wed, 10 times``."""
    try:
        rule = parse_rule(text)
    except RecurrenceError:
        return text
    if rule is None:
        return "once"
    unit = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month"}[rule.freq]
    words = f"every {unit}" if rule.interval == 1 else f"every {rule.interval} {unit}s"
    if rule.weekdays:
        words += " on " + ", ".join(WEEKDAY_NAMES[d] for d in rule.weekdays)
    if rule.count is not None:
        words += f", {rule.count} times"
    if rule.until is not None:
        words += f", until {rule.until[:4]}-{rule.until[4:6]}-{rule.until[6:8]}"
    return words


def _rows(now: int, status: str, order: str) -> list[dict[str, Any]]:
    active = service.active_keys(now)
    colours = colour_map()
    rows = []
    for reservation in Reservation.objects.all():
        phase = service.phase(reservation, now)
        if status and phase != status:
            continue
        upcoming = service.next_occurrence(reservation, now)
        rows.append(
            {
                "reservation": reservation,
                "phase": phase,
                "is_active": str(reservation.id) in active,
                "next": service.span(upcoming.start, upcoming.end) if upcoming else "",
                "sort": upcoming.start
                if upcoming
                else reservation.end_time.timestamp(),
                "rule": describe_rule(reservation.recurrence),
                "colour": colours.get(reservation.id, PALETTE[0]),
            }
        )
    reverse = order == "-start"
    rows.sort(key=lambda row: row["sort"], reverse=reverse)
    return rows


def colour_map() -> dict:
    """A distinct colour per reservation, stable while reservations exist."""
    ids = Reservation.objects.order_by("created_at", "id").values_list("id", flat=True)
    return {pk: PALETTE[i % len(PALETTE)] for i, pk in enumerate(ids)}


@require_GET
def reservation_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    status = status if status in STATUSES else ""
    order = "-start" if request.GET.get("order") == "-start" else "start"
    context = {
        "rows": _rows(int(time.time()), status, order),
        "status": status,
        "order": order,
        "statuses": STATUSES,
        "time_zone": service.local(0).tzinfo,
    }
    if request.htmx and request.htmx.target == "reservation-table":
        return render(request, "reservations/partials/table.html", context)
    return render(request, "reservations/list.html", context)


@require_POST
def toggle(request: HttpRequest, pk: str) -> HttpResponse:
    """Enable or disable; enabling is reviewed like a save."""
    reservation = get_object_or_404(Reservation, id=pk)
    error = ""
    try:
        service.set_enabled(reservation, not reservation.enabled, _user(request))
    except ReservationError as exc:
        error = "; ".join(p.message for p in exc.problems)
    reservation.refresh_from_db()
    if not request.htmx:
        if error:
            messages.error(request, f"{reservation.name}: {error}")
        return redirect("reservations:list")
    now = int(time.time())
    row = next(
        r for r in _rows(now, "", "start") if r["reservation"].id == reservation.id
    )
    return render(
        request, "reservations/partials/row.html", {"row": row, "error": error}
    )


@require_POST
def delete(request: HttpRequest, pk: str) -> HttpResponse:
    reservation = get_object_or_404(Reservation, id=pk)
    service.delete(reservation, _user(request))
    if request.htmx:
        return HttpResponse("")
    messages.success(request, f"Reservation {reservation.name!r} deleted")
    return redirect("reservations:list")


# -- form ---------------------------------------------------------------------


def _initial(request: HttpRequest) -> dict[str, Any]:
    """Start and end from ``?start=`` (a calendar click), else the next hour."""
    start_text = request.GET.get("start", "")
    try:
        start = datetime.fromisoformat(start_text)
    except ValueError:
        start = None
    if start is None:
        now = service.local(int(time.time())).replace(tzinfo=None)
        start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    elif len(start_text) <= 10:
        start = start.replace(hour=9)
    return {
        "start_time": start.strftime("%Y-%m-%dT%H:%M"),
        "end_time": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "cpu_quota": 50,
        "priority": 5,
        "enabled": True,
    }


def create(request: HttpRequest) -> HttpResponse:
    return _edit(request, Reservation(), _initial(request))


def edit(request: HttpRequest, pk: str) -> HttpResponse:
    return _edit(request, get_object_or_404(Reservation, id=pk), None)


def _edit(
    request: HttpRequest, reservation: Reservation, initial: dict | None
) -> HttpResponse:
    if request.method == "POST":
        form = ReservationForm(request.POST, instance=reservation)
        if form.is_valid():
            try:
                saved, report = form.save_reviewed(_user(request))
            except ReservationError as exc:
                for problem in exc.problems:
                    form.add_error(form.field_for(problem.field), problem.message)
            else:
                verb = "created" if reservation._state.adding else "saved"
                messages.success(request, f"Reservation {saved.name!r} {verb}")
                for notice in [*form.notes(), *report.notices]:
                    messages.warning(request, notice)
                return redirect("reservations:list")
    else:
        form = ReservationForm(instance=reservation, initial=initial)
    context = {
        "form": form,
        "reservation": None if reservation._state.adding else reservation,
        "time_zone": service.local(0).tzinfo,
    }
    return render(request, "reservations/form.html", context)


@require_POST
def check(request: HttpRequest) -> HttpResponse:
    """Live feedback while typing: field errors, conflicts, feasibility,
    notices, the budget taken and the forecast chart's data."""
    original = None
    if request.POST.get("id"):
        original = get_object_or_404(Reservation, id=request.POST["id"])
    form = ReservationForm(
        request.POST, instance=original or Reservation(), review=False
    )
    result = None
    if form.is_valid() and form.draft is not None:
        result = preview.build(form.draft, original=original)
        result["notices"] = [*form.notes(), *result["notices"]]
    context = {"form": form, "result": result}
    return render(request, "reservations/partials/feedback.html", context)


# -- calendar -----------------------------------------------------------------


@require_GET
def calendar(request: HttpRequest) -> HttpResponse:
    return render(
        request, "reservations/calendar.html", {"time_zone": service.local(0).tzinfo}
    )


def _wall(ts: int) -> str:
    """An instant as a naive local ISO string: the calendar runs in "UTC"
    mode and shows these wall-clock times unchanged."""
    return service.local(ts).replace(tzinfo=None).isoformat()


def _from_wall(text: str) -> int:
    naive = datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None)
    instant, _ = resolve_local(naive, zone(settings.TIME_ZONE))
    return int(instant.timestamp())


@require_GET
def events(request: HttpRequest) -> HttpResponse:
    """Slots overlapping ``[start, end)`` for the calendar (JSON)."""
    try:
        start = _from_wall(request.GET["start"])
        end = _from_wall(request.GET["end"])
    except (KeyError, ValueError):
        return HttpResponseBadRequest("start and end are required ISO dates")
    end = min(end, start + 62 * 86_400)
    from reservations.profile import honoured

    kept, displaced = honoured(start, end)
    lost = {(d.loser.key, d.loser.start) for d in displaced}
    colours = colour_map()
    found = []
    for reservation in Reservation.objects.all():
        for slot in service.booked_of(reservation, start, end):
            found.append(
                _event(reservation, slot, colours, (slot.key, slot.start) in lost)
            )
    return JsonResponse(found, safe=False)


def _event(reservation: Reservation, slot, colours: dict, displaced: bool) -> dict:
    faded = displaced or not reservation.enabled or reservation.archived
    state = (
        "displaced" if displaced else ("disabled" if not reservation.enabled else "")
    )
    title = f"{reservation.name} {reservation.cpu_quota:g} %"
    if state:
        title += f" ({state})"
    return {
        "id": f"{reservation.id}:{slot.start}",
        "groupId": str(reservation.id),
        "title": title,
        "start": _wall(slot.start),
        "end": _wall(slot.end),
        "color": colours.get(reservation.id, PALETTE[0]),
        "editable": not reservation.archived,
        "classNames": ["reservation-faded"] if faded else [],
        "extendedProps": {
            "reservation": str(reservation.id),
            "note": slot.note,
            "recurring": reservation.is_recurring,
            "edit_url": f"/reservations/{reservation.id}/edit/",
        },
    }


@require_POST
def move(request: HttpRequest, pk: str) -> HttpResponse:
    """Move or stretch a reservation by a dragged slot's change.

    The body is JSON ``{"start_delta_ms": n, "end_delta_ms": n}``: wall-clock
    milliseconds the slot's start and end moved (the calendar runs on the
    wall clock). A recurring reservation moves as a whole series. Answers
    ``{"ok": true, "notices": [...]}`` or 422 ``{"ok": false, "message"}``.
    """
    reservation = get_object_or_404(Reservation, id=pk)
    try:
        body = json.loads(request.body or b"{}")
        start_delta = timedelta(milliseconds=int(body.get("start_delta_ms", 0)))
        end_delta = timedelta(milliseconds=int(body.get("end_delta_ms", 0)))
    except (ValueError, TypeError, AttributeError):
        return JsonResponse(
            {
                "ok": False,
                "message": "Expected JSON with start_delta_ms and end_delta_ms",
            },
            status=400,
        )
    try:
        draft = _moved(reservation, start_delta, end_delta)
        _, report = service.save(draft, _user(request))
    except (ValueError, ReservationError) as exc:
        problems = getattr(exc, "problems", None)
        message = "; ".join(p.message for p in problems) if problems else str(exc)
        return JsonResponse({"ok": False, "message": message}, status=422)
    return JsonResponse({"ok": True, "notices": report.notices})


def _moved(
    reservation: Reservation, start_delta: timedelta, end_delta: timedelta
) -> Draft:
    """The reservation with its first slot's wall-clock start and end moved."""
    tz_name = reservation.time_zone
    start_wall = service.local(reservation.start_time, tz_name).replace(tzinfo=None)
    end_wall = service.local(reservation.end_time, tz_name).replace(tzinfo=None)
    start, _ = service.to_instant(start_wall + start_delta, tz_name)
    if end_delta == start_delta:
        end = start + (reservation.end_time - reservation.start_time)
    else:
        end, _ = service.to_instant(end_wall + end_delta, tz_name)
    return Draft.of(reservation, start_time=start, end_time=end)


# -- analysis -----------------------------------------------------------------


@require_GET
def analysis_view(request: HttpRequest) -> HttpResponse:
    try:
        days = max(1, min(30, int(request.GET.get("days", 7))))
    except ValueError:
        days = 7
    now = int(time.time())
    context = {
        "days": days,
        "past": analysis.past_rows(days, now),
        "coming": analysis.coming_rows(days, now),
        "chart": analysis.hourly(days, now),
        "day_choices": (1, 7, 14, 30),
        "time_zone": service.local(0).tzinfo,
    }
    return render(request, "reservations/analysis.html", context)
