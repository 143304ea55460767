"""REST endpoints for reservations (``/api/reservations``).

Writes go through :mod:`reservations.service`, like the pages and the admin,
so they refuse the same things with the same messages: a 422 whose entries
each name the field (``loc``) and say what is wrong. Unknown fields are
refused too. Times without an offset are the operator's wall clock
(``server.time_zone``); an accepted write answers with the notices the
operator should read (daylight-saving adjustments, displaced reservations).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any, Literal, NoReturn

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema, Status
from ninja.errors import ValidationError
from pydantic import ConfigDict, Field

from reservations import preview, service
from reservations.models import Reservation
from reservations.service import Draft, Problem, ReservationError

router = Router(tags=["reservations"])

Phase = Literal["active", "future", "expired"]


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class ReservationIn(Strict):
    name: str = Field(max_length=200)
    start_time: datetime = Field(description="ISO 8601; no offset: local time")
    end_time: datetime
    cpu_quota: float = Field(description="Percent of the whole machine")
    description: str = Field("", max_length=10_000)
    priority: int = Field(5, description="1 (lowest) to 10")
    enabled: bool = True
    recurrence: str = Field(
        "",
        max_length=500,
        description="RRULE: FREQ=DAILY|WEEKLY|MONTHLY, INTERVAL, BYDAY (weekly), "
        "COUNT or UNTIL; empty for a one-off slot",
    )
    time_zone: str = Field(
        "", max_length=64, description="IANA zone a rule follows; default the server's"
    )


class ReservationPatch(Strict):
    name: str | None = Field(None, max_length=200)
    start_time: datetime | None = None
    end_time: datetime | None = None
    cpu_quota: float | None = None
    description: str | None = Field(None, max_length=10_000)
    priority: int | None = None
    enabled: bool | None = None
    recurrence: str | None = Field(None, max_length=500)
    time_zone: str | None = Field(None, max_length=64)


class PreviewIn(ReservationIn):
    id: uuid.UUID | None = Field(None, description="The reservation being edited")
    hours: int = Field(24, ge=1, le=72, description="Hours of cap forecast")


class OccurrenceOut(Schema):
    start: datetime
    end: datetime
    note: str


class ReservationOut(Schema):
    id: uuid.UUID
    name: str
    description: str
    start_time: datetime
    end_time: datetime
    cpu_quota: float
    priority: int
    enabled: bool
    recurrence: str
    time_zone: str
    is_active: bool = Field(description="A slot of it is honoured right now")
    status: Phase = Field(description="By time: active, future or expired")
    next_start: datetime | None
    next_end: datetime | None
    archived: bool
    archived_at: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class ReservationList(Schema):
    reservations: list[ReservationOut]


class Saved(Schema):
    reservation: ReservationOut
    notices: list[str]
    budget: dict[str, float]


class ListQuery(Schema):
    status: Phase | None = None
    order: Literal["start", "-start", "name", "priority"] = "start"


@router.get("", response=ReservationList, summary="All reservations")
def list_reservations(request: HttpRequest, query: Query[ListQuery]) -> dict:
    now = int(time.time())
    active = service.active_keys(now)
    rows = [describe(r, now, active) for r in service.ordered(query.order)]
    if query.status:
        rows = [row for row in rows if row["status"] == query.status]
    return {"reservations": rows}


@router.post("/preview", response=dict[str, Any], summary="Check without saving")
def preview_reservation(request: HttpRequest, body: PreviewIn) -> dict:
    """Conflicts, feasibility, the budget one slot takes, and the planner's
    hourly cap forecast with and without the reservation. ``ok`` false lists
    the problems in ``errors`` (field: messages), as a save would refuse."""
    values = body.model_dump(exclude={"id", "hours"})
    original = None
    if body.id is not None:
        original = get_object_or_404(Reservation, id=body.id)
    draft = _draft(values, original)
    return preview.build(draft, original=original, hours=body.hours)


@router.get("/{reservation_id}", response=ReservationOut, summary="One reservation")
def get_reservation(request: HttpRequest, reservation_id: uuid.UUID) -> dict:
    reservation = get_object_or_404(Reservation, id=reservation_id)
    now = int(time.time())
    return describe(reservation, now, service.active_keys(now))


@router.get(
    "/{reservation_id}/occurrences",
    response=list[OccurrenceOut],
    summary="Upcoming slots, with daylight-saving notes",
)
def get_occurrences(
    request: HttpRequest, reservation_id: uuid.UUID, days: int = Query(31, ge=1, le=366)
) -> list[dict]:
    reservation = get_object_or_404(Reservation, id=reservation_id)
    now = int(time.time())
    return [
        _occurrence(o)
        for o in service.occurrences(reservation.series(), now, now + days * 86_400)
    ]


@router.post("", response={201: Saved}, summary="Create a reservation")
def create_reservation(request: HttpRequest, body: ReservationIn) -> Status:
    draft = _draft(body.model_dump())
    return Status(201, _save(request, draft))


@router.put("/{reservation_id}", response=Saved, summary="Replace a reservation")
def put_reservation(
    request: HttpRequest, reservation_id: uuid.UUID, body: ReservationIn
) -> dict:
    reservation = get_object_or_404(Reservation, id=reservation_id)
    draft = _draft(body.model_dump(), reservation)
    return _save(request, draft)


@router.patch("/{reservation_id}", response=Saved, summary="Change some fields")
def patch_reservation(
    request: HttpRequest, reservation_id: uuid.UUID, body: ReservationPatch
) -> dict:
    reservation = get_object_or_404(Reservation, id=reservation_id)
    changes = body.model_dump(exclude_unset=True)
    _refuse_nulls(changes)
    values = {name: getattr(reservation, name) for name in service.FIELDS}
    values.update(changes)
    draft = _draft(values, reservation)
    return _save(request, draft)


@router.delete("/{reservation_id}", response={204: None}, summary="Delete")
def delete_reservation(request: HttpRequest, reservation_id: uuid.UUID) -> Status:
    reservation = get_object_or_404(Reservation, id=reservation_id)
    service.delete(reservation, _user(request))
    return Status(204, None)


# -- helpers ------------------------------------------------------------------


def describe(reservation: Reservation, now: int, active: set[str]) -> dict:
    """The API's view of a reservation."""
    upcoming = service.next_occurrence(reservation, now)
    return {
        **{name: getattr(reservation, name) for name in service.FIELDS},
        "id": reservation.id,
        "is_active": str(reservation.id) in active,
        "status": service.phase(reservation, now),
        "next_start": _instant(upcoming.start) if upcoming else None,
        "next_end": _instant(upcoming.end) if upcoming else None,
        "archived": reservation.archived,
        "archived_at": reservation.archived_at,
        "created_at": reservation.created_at,
        "created_by": reservation.created_by,
        "updated_at": reservation.updated_at,
        "updated_by": reservation.updated_by,
    }


def _instant(ts: int) -> datetime:
    return service.local(ts, "UTC")


def _occurrence(occurrence: service.Occurrence) -> dict:
    return {
        "start": _instant(occurrence.start),
        "end": _instant(occurrence.end),
        "note": occurrence.note,
    }


def _draft(values: dict[str, Any], original: Reservation | None = None) -> Draft:
    """A draft from API values; naive times are the operator's wall clock."""
    problems: list[Problem] = []
    tz_name = values.get("time_zone") or (original.time_zone if original else "")
    for name in ("start_time", "end_time"):
        try:
            values[name], _ = service.to_instant(values[name], tz_name)
        except ValueError as exc:
            problems.append(Problem(name, str(exc)))
    if problems:
        _refuse(problems)
    if original is None:
        return Draft(**values)
    return Draft.of(original, **values)


def _refuse_nulls(changes: dict[str, Any]) -> None:
    nulls = [name for name, value in changes.items() if value is None]
    if nulls:
        _refuse(
            [
                Problem(name, "May not be null: leave it out to keep it")
                for name in nulls
            ]
        )


def _save(request: HttpRequest, draft: Draft) -> dict:
    try:
        reservation, report = service.save(draft, _user(request))
    except ReservationError as exc:
        _refuse(exc.problems)
    now = int(time.time())
    return {
        "reservation": describe(reservation, now, service.active_keys(now)),
        "notices": report.notices,
        "budget": report.budget,
    }


def _refuse(problems: list[Problem]) -> NoReturn:
    """A 422 whose entries each name a field and say what is wrong."""
    raise ValidationError(
        [
            {"loc": ["body", p.field], "msg": p.message, "type": "value_error"}
            for p in problems
        ]
    )


def _user(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_username()
    auth = getattr(request, "auth", None)
    return getattr(auth, "username", "") or ""
