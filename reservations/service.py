"""Checking, saving, toggling, deleting and archiving reservations.

Forms, the API and the admin all go through :func:`review` and :func:`save`,
so they refuse the same things with the same messages. A review checks, in
order: the fields (times, duration, percent, priority, time zone, rule);
overlaps with other reservations (``reservation.allow_overlap``,
``reservation.priority_override``, ``reservation.max_concurrent``, the
reserved total against ``limits.absolute_max_cpu``); and feasibility with the
planner (:mod:`reservations.feasibility`). Every change bumps the
``reservations`` revision the scheduler polls.

Conflicts and feasibility look one year ahead (:data:`HORIZON_S`); a rule
that runs longer repeats the same pattern of days, so later overlaps are the
ones already seen, except for patterns longer than a year (documented). A
reservation whose first (or next) slot starts beyond that horizon could not
be checked, so it is refused with a message naming the limit.

Errors: :class:`ReservationError` carries the :class:`Problem` list of a
refused review.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpusched import config
from cpusched.models import Revision
from reservations import conflicts, feasibility
from reservations.conflicts import Booked, Displacement
from reservations.models import Reservation
from reservations.recurrence import (
    Occurrence,
    RecurrenceError,
    Series,
    iterate,
    last_end,
    nonexistent,
    occurrences,
    parse_rule,
    resolve_local,
    zone,
)
from scheduling.planner import Planner

logger = logging.getLogger(__name__)

HORIZON_DAYS = 366
HORIZON_S = HORIZON_DAYS * 86_400
"""How far ahead conflicts and feasibility are checked, and how far ahead a
reservation may start."""

REVISION = "reservations"
FIELDS = (
    "name",
    "description",
    "start_time",
    "end_time",
    "cpu_quota",
    "priority",
    "enabled",
    "recurrence",
    "time_zone",
)


@dataclass(frozen=True)
class Problem:
    """Why a reservation is refused; ``field`` names the field to fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ReservationError(Exception):
    """A refused reservation, with every problem found."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def as_dict(self) -> dict[str, list[str]]:
        return errors_by_field(self.problems)


def errors_by_field(problems: Iterable[Problem]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in problems:
        found.setdefault(problem.field, []).append(problem.message)
    return found


@dataclass
class Draft:
    """The values of a reservation being created or changed."""

    name: str
    start_time: datetime
    end_time: datetime
    cpu_quota: float
    description: str = ""
    priority: int = 5
    enabled: bool = True
    recurrence: str = ""
    time_zone: str = ""
    id: uuid.UUID | None = None
    created_at: datetime | None = None

    @classmethod
    def of(cls, reservation: Reservation, **changes: Any) -> Draft:
        """The draft of a stored reservation, with ``changes`` applied."""
        values = {name: getattr(reservation, name) for name in FIELDS}
        values.update(changes)
        return cls(**values, id=reservation.id, created_at=reservation.created_at)

    @property
    def duration_s(self) -> int:
        return int((self.end_time - self.start_time).total_seconds())

    def series(self) -> Series:
        """The slots; a draft without a zone follows the operator's."""
        return Series(
            start=self.start_time.replace(microsecond=0),
            duration_s=self.duration_s,
            rule=self.recurrence,
            time_zone=self.time_zone or settings.TIME_ZONE,
        )


@dataclass
class Report:
    """What a review found: problems (refusal), notices (accepted, but the
    operator should know), displaced occurrences and the budget taken."""

    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    displaced: list[Displacement] = field(default_factory=list)
    upcoming: list[Occurrence] = field(default_factory=list)
    budget: dict[str, float] = field(default_factory=dict)
    shortfall: feasibility.Shortfall | None = None
    checked_feasibility: bool = False
    before: list[Booked] = field(default_factory=list)
    after: list[Booked] = field(default_factory=list)
    planner: Planner | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def refuse(self, field_name: str, message: str) -> None:
        self.problems.append(Problem(field_name, message))

    def errors(self) -> dict[str, list[str]]:
        return errors_by_field(self.problems)


# -- formatting ---------------------------------------------------------------


def local(ts: int | datetime, tz_name: str = "") -> datetime:
    """An instant on the operator's wall clock (or ``tz_name``'s)."""
    if isinstance(ts, int):
        ts = datetime.fromtimestamp(ts, UTC)
    return ts.astimezone(zone(tz_name or settings.TIME_ZONE))


def span(start: int, end: int, tz_name: str = "") -> str:
    """``from 14:00 to 16:00 on Tue 10 Mar 2026`` in local time."""
    a, b = local(start, tz_name), local(end, tz_name)
    if a.date() == b.date():
        return f"from {a:%H:%M} to {b:%H:%M} on {a:%a %d %b %Y}"
    return f"from {a:%a %d %b %Y %H:%M} to {b:%a %d %b %Y %H:%M}"


def _amount(cpu_s: float) -> str:
    if cpu_s >= 360:
        return f"{cpu_s / 3600:.1f} CPU-hours"
    return f"{cpu_s:.0f} CPU-seconds"


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:g}-hour"


def shortfall_message(short: feasibility.Shortfall) -> str:
    """The planner's refusal in an operator's words."""
    check, limits, occ = short.check, short.limits, short.occurrence
    when = span(occ.start, occ.end)
    head = f"{when[0].upper()}{when[1:]} at {short.percent:g} %"
    window = ""
    if check.window_start is not None and check.window_end is not None:
        window = f" (the window {span(check.window_start, check.window_end)})"
    fit = check.max_percent if short.series_fit is None else short.series_fit
    every = "" if short.series_fit is None else " for every slot of the series"
    if fit < limits.floor:
        fits = "nothing above the floor fits then"
    else:
        fits = f"{fit:g} % would fit{every}"
    if check.rule == "peak":
        return (
            f"{head} needs {check.peak_excess_s} peak seconds (at or above "
            f"{limits.peak_threshold:g} %) more than the "
            f"{_hours(limits.peak_window_s)} peak budget of "
            f"{limits.peak_budget_effective} s allows{window}; {fits}"
        )
    return (
        f"{head} needs {_amount(check.shortfall_cpu_s)} more than the "
        f"{_hours(limits.avg_window_s)} budget allows{window}; {fits}"
    )


def to_instant(value: datetime, tz_name: str = "") -> tuple[datetime, str]:
    """An aware UTC instant; a naive value is a wall-clock time in
    ``tz_name`` (default: the operator's zone).

    An ambiguous time takes its first instant and returns a note; a
    nonexistent one raises ValueError, since guessing would move a one-off
    slot silently.
    """
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(microsecond=0), ""
    tz = zone(tz_name or settings.TIME_ZONE)
    if nonexistent(value, tz):
        raise ValueError(
            f"{value:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks go "
            "forward then): pick a time before or after the gap"
        )
    instant, note = resolve_local(value.replace(microsecond=0), tz)
    return instant, note


# -- review -------------------------------------------------------------------


def current_params() -> dict[str, Any]:
    return config.snapshot()


def review(
    draft: Draft,
    *,
    now: int | None = None,
    params: Mapping[str, Any] | None = None,
    check_feasibility: bool = True,
    original: Reservation | None = None,
) -> Report:
    """Check a draft against the fields' rules, the other reservations and
    the planner. Nothing is stored."""
    now = int(time.time()) if now is None else now
    params = current_params() if params is None else params
    report = Report()

    _check_fields(draft, params, now, report)
    if not report.ok:
        return report

    series = draft.series()
    upcoming = occurrences(series, now, now + HORIZON_S)
    report.upcoming = upcoming[:50]
    _note_adjustments(upcoming, report)
    if not upcoming and _times_changed(draft, original):
        _check_next_slot(series, now, report)
        if not report.ok:
            return report
        end = last_end(series) or int(draft.end_time.timestamp())
        report.refuse(
            "end_time",
            f"The last slot ends at {local(end):%Y-%m-%d %H:%M}, in the past: "
            "a reservation must end after now",
        )
        return report
    if not draft.enabled or not upcoming:
        return report

    mine = [_booked(draft, occ) for occ in upcoming]
    others = other_booked(draft.id, now, now + HORIZON_S)
    honoured = _check_overlaps(draft, mine, others, params, report)
    if not report.ok or not check_feasibility:
        return report

    _check_feasibility(draft, honoured, params, now, report)
    return report


def _check_fields(
    draft: Draft, params: Mapping[str, Any], now: int, report: Report
) -> None:
    if not (draft.name or "").strip():
        report.refuse("name", "A name is required")
    _check_times(draft, params, report)
    if not _check_horizon(draft, now, report):
        # Later checks convert the start to local time, which overflows
        # for a start near the year 9999.
        return
    _check_percent(draft, params, report)
    if not isinstance(draft.priority, int) or not 1 <= draft.priority <= 10:
        report.refuse(
            "priority", f"Priority {draft.priority!r} is refused: expected 1 to 10"
        )
    try:
        zone(draft.time_zone or settings.TIME_ZONE)
    except RecurrenceError as exc:
        report.refuse("time_zone", str(exc))
        return
    _check_rule(draft, report)


def _check_times(draft: Draft, params: Mapping[str, Any], report: Report) -> None:
    if draft.end_time <= draft.start_time:
        report.refuse(
            "end_time",
            f"End {local(draft.end_time):%Y-%m-%d %H:%M} must be after start "
            f"{local(draft.start_time):%Y-%m-%d %H:%M}",
        )
        return
    minutes = draft.duration_s / 60
    shortest = params["reservation.min_duration"]
    longest = params["reservation.max_duration"]
    if minutes < shortest or minutes > longest * 60:
        report.refuse(
            "end_time",
            f"A slot of {_duration(draft.duration_s)} is refused: expected from "
            f"{shortest:g} minutes (reservation.min_duration) to {longest:g} hours "
            "(reservation.max_duration)",
        )


def _check_horizon(draft: Draft, now: int, report: Report) -> bool:
    """Refuse a first slot starting beyond the horizon; True when it is within."""
    start = int(draft.start_time.timestamp())
    if start < now + HORIZON_S:
        return True
    report.refuse("start_time", _beyond_horizon("Starts", start, now, draft.time_zone))
    return False


def _check_next_slot(series: Series, now: int, report: Report) -> None:
    """Refuse a series begun earlier whose next slot is beyond the horizon
    (a long INTERVAL), rather than calling it ended."""
    try:
        following = next(iterate(series, now), None)
    except (OverflowError, ValueError):
        return  # the rule runs past the year 9999: treat it as ended
    if following is None or following.start < now + HORIZON_S:
        return
    report.refuse(
        "start_time",
        _beyond_horizon("The next slot starts", following.start, now, series.time_zone),
    )


def _beyond_horizon(what: str, start: int, now: int, tz_name: str) -> str:
    limit = now + HORIZON_S
    tz_name = _known_zone(tz_name)
    return (
        f"{what} on {_day(start, tz_name)}, {HORIZON_DAYS} days or more ahead: "
        f"reservations can be made at most {HORIZON_DAYS} days ahead (a slot "
        f"must start before {_day(limit, tz_name)} {local(limit, tz_name):%H:%M})"
    )


def _known_zone(tz_name: str) -> str:
    """``tz_name``, or UTC when it is unknown (its own check reports that)."""
    try:
        zone(tz_name or settings.TIME_ZONE)
    except RecurrenceError:
        return "UTC"
    return tz_name


def _day(ts: int, tz_name: str) -> str:
    """The local date of ``ts``; the UTC date when local time would pass the
    year 9999."""
    try:
        return f"{local(ts, tz_name):%Y-%m-%d}"
    except OverflowError:
        return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d} (UTC)"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _check_percent(draft: Draft, params: Mapping[str, Any], report: Report) -> None:
    low = params["limits.absolute_min_cpu"]
    high = params["limits.absolute_max_cpu"]
    percent = draft.cpu_quota
    if not isinstance(percent, (int, float)) or not low <= percent <= high:
        report.refuse(
            "cpu_quota",
            f"CPU {percent!r} % is refused: expected from {low:g} % "
            f"(limits.absolute_min_cpu) to {high:g} % (limits.absolute_max_cpu)",
        )


def _check_rule(draft: Draft, report: Report) -> None:
    try:
        rule = parse_rule(draft.recurrence)
    except RecurrenceError as exc:
        report.refuse("recurrence", str(exc))
        return
    tz = zone(draft.time_zone or settings.TIME_ZONE)
    first = draft.start_time.astimezone(tz)
    if rule is None:
        return
    draft.recurrence = rule.text()
    wall = first.replace(tzinfo=None)
    if nonexistent(wall, tz):
        report.refuse(
            "start_time",
            f"{wall:%Y-%m-%d %H:%M} does not exist in {tz.key}: start the series on "
            "another day (later occurrences at that time are shifted by the gap)",
        )
        return
    opening = next(iterate(draft.series()), None)
    if opening is None or opening.start != int(draft.start_time.timestamp()):
        report.refuse(
            "recurrence",
            f"The first slot ({first:%a %d %b %Y %H:%M}) is not one the rule "
            f"{rule.text()} produces: start on a day the rule includes",
        )


def _note_adjustments(upcoming: list[Occurrence], report: Report) -> None:
    for occ in upcoming:
        if occ.note and occ.note not in report.notices:
            report.notices.append(occ.note)


def _times_changed(draft: Draft, original: Reservation | None) -> bool:
    if original is None:
        return True
    return (
        draft.start_time != original.start_time
        or draft.end_time != original.end_time
        or draft.recurrence != original.recurrence
        or (draft.enabled and not original.enabled)
    )


def _rank(priority: int, created_at: datetime | None, key: str) -> tuple:
    created = created_at.timestamp() if created_at else float("inf")
    return (-priority, created, key)


def _booked(draft: Draft, occ: Occurrence) -> Booked:
    key = str(draft.id or "new")
    return Booked(
        occ.start,
        occ.end,
        float(draft.cpu_quota),
        key,
        draft.name,
        draft.priority,
        _rank(draft.priority, draft.created_at, key),
        occ.note,
    )


def booked_of(reservation: Reservation, start: int, end: int) -> list[Booked]:
    """A stored reservation's occurrences overlapping ``[start, end)``."""
    key = str(reservation.id)
    rank = _rank(reservation.priority, reservation.created_at, key)
    try:
        found = occurrences(reservation.series(), start, end)
    except RecurrenceError as exc:
        # Only a row written around the service can hold a bad rule.
        logger.warning(
            "Reservation %s %r is ignored: its rule %r cannot be used: %s",
            key,
            reservation.name,
            reservation.recurrence,
            exc,
        )
        return []
    return [
        Booked(
            occ.start,
            occ.end,
            reservation.cpu_quota,
            key,
            reservation.name,
            reservation.priority,
            rank,
            occ.note,
        )
        for occ in found
    ]


def live_reservations():
    """Enabled, not archived: the ones the planner honours."""
    return Reservation.objects.filter(enabled=True, archived=False)


def other_booked(exclude: uuid.UUID | None, start: int, end: int) -> list[Booked]:
    found: list[Booked] = []
    rows = live_reservations()
    if exclude is not None:
        rows = rows.exclude(id=exclude)
    for reservation in rows:
        found.extend(booked_of(reservation, start, end))
    return found


def _check_overlaps(
    draft: Draft,
    mine: list[Booked],
    others: list[Booked],
    params: Mapping[str, Any],
    report: Report,
) -> list[Booked]:
    """Refuse forbidden overlaps, note displacements; return every honoured
    occurrence (others and mine) as they would be after saving."""
    allow = bool(params["reservation.allow_overlap"])
    override = bool(params["reservation.priority_override"])
    before, _ = conflicts.resolve(others, allow)
    report.before = before
    if not allow:
        _check_exclusive(draft, mine, before, override, report)
        if not report.ok:
            return []

    after, displaced = conflicts.resolve([*others, *mine], allow)
    report.after = after
    report.displaced = [d for d in displaced if d.winner.key == mine[0].key]
    _note_displaced(report)
    key = mine[0].key
    _check_concurrent(key, after, params, report)
    return after


def _check_exclusive(
    draft: Draft,
    mine: list[Booked],
    before: list[Booked],
    override: bool,
    report: Report,
) -> None:
    clashes = [o for o in before if any(m.overlaps(o) for m in mine)]
    blocking = [o for o in clashes if not (override and draft.priority > o.priority)]
    if not blocking:
        return
    first = blocking[0]
    more = len(blocking) - 1
    message = (
        f"Overlaps {first.name!r} (priority {first.priority}) "
        f"{span(first.start, first.end)}"
    )
    if more:
        message += f" and {more} more slot{'s' if more > 1 else ''}"
    message += (
        ": overlapping reservations are refused (reservation.allow_overlap is off)"
    )
    if override:
        message += (
            f"; only a higher priority displaces another, and this one has "
            f"priority {draft.priority}"
        )
    report.refuse("start_time", message)


def _note_displaced(report: Report) -> None:
    by_name: dict[str, list[Displacement]] = {}
    for item in report.displaced:
        by_name.setdefault(item.loser.key, []).append(item)
    for items in by_name.values():
        loser = items[0].loser
        more = len(items) - 1
        extra = f" and {more} more occurrence{'s' if more > 1 else ''}" if more else ""
        report.notices.append(
            f"Displaces {loser.name!r} (priority {loser.priority}) "
            f"{span(loser.start, loser.end)}{extra}: those occurrences are skipped "
            f"while this reservation overlaps them; {loser.name!r} keeps its other "
            "occurrences and gets these back if this one moves, is disabled or "
            "deleted"
        )


def _check_concurrent(
    key: str, after: list[Booked], params: Mapping[str, Any], report: Report
) -> None:
    most = conflicts.most_concurrent(after, key)
    limit = params["reservation.max_concurrent"]
    if most.value > limit:
        report.refuse(
            "start_time",
            f"{int(most.value)} reservations would be active at once "
            f"{span(most.start, most.end)}: at most {limit} are allowed "
            "(reservation.max_concurrent)",
        )
    reserved = conflicts.most_reserved(after, key)
    high = params["limits.absolute_max_cpu"]
    if reserved.value > high + 1e-9:
        report.refuse(
            "cpu_quota",
            f"Together with the reservations it overlaps, {reserved.value:g} % "
            f"would be reserved {span(reserved.start, reserved.end)}: at most "
            f"{high:g} % can be (limits.absolute_max_cpu)",
        )


def _check_feasibility(
    draft: Draft,
    honoured: list[Booked],
    params: Mapping[str, Any],
    now: int,
    report: Report,
) -> None:
    key = str(draft.id or "new")
    mine = [Occurrence(b.start, b.end, b.note) for b in honoured if b.key == key]
    others = [(b.start, b.end, b.percent) for b in honoured if b.key != key]
    planner = feasibility.build_planner(params, now)
    report.planner = planner
    report.budget = feasibility.budget_taken(
        planner.limits, draft.duration_s, float(draft.cpu_quota)
    )
    report.checked_feasibility = True
    short = feasibility.first_shortfall(planner, mine, float(draft.cpu_quota), others)
    if short is not None:
        report.shortfall = short
        report.refuse("cpu_quota", shortfall_message(short))


# -- changes ------------------------------------------------------------------


def save(
    draft: Draft,
    user: str = "",
    *,
    now: int | None = None,
    reviewed: tuple[Report, int] | None = None,
    attempts: int = 3,
) -> tuple[Reservation, Report]:
    """Review and store a draft; raise ReservationError when refused.

    The review runs outside the write transaction (it reads a day of
    samples); the store is refused and the review repeated when another
    reservation changed in between. ``reviewed`` is a report already made
    for this draft and the revision it was made at (a form's clean step).
    """
    original = None
    if draft.id is not None:
        original = Reservation.objects.filter(id=draft.id).first()
    for _ in range(attempts):
        if reviewed is None:
            revision = Revision.current(REVISION)
            report = review(draft, now=now, original=original)
        else:
            report, revision = reviewed
            reviewed = None
        if not report.ok:
            raise ReservationError(report.problems)
        with transaction.atomic():
            if Revision.current(REVISION) != revision:
                continue
            reservation = _store(draft, original, user)
            Revision.bump(REVISION)
        _log_saved(reservation, original, user, report)
        return reservation, report
    raise ReservationError(
        [
            Problem(
                "name",
                "Reservations kept changing while this one was checked: try again",
            )
        ]
    )


def _store(draft: Draft, original: Reservation | None, user: str) -> Reservation:
    reservation = original or Reservation(created_by=user)
    for name in FIELDS:
        setattr(reservation, name, getattr(draft, name))
    reservation.time_zone = draft.time_zone or settings.TIME_ZONE
    reservation.start_time = draft.start_time.replace(microsecond=0)
    reservation.end_time = draft.end_time.replace(microsecond=0)
    reservation.updated_by = user
    if reservation.archived and _has_future(reservation):
        reservation.archived = False
        reservation.archived_at = None
    reservation.save()
    return reservation


def _log_saved(
    reservation: Reservation, original: Reservation | None, user: str, report: Report
) -> None:
    verb = "changed" if original else "created"
    logger.info(
        "Reservation %s %r %s by %s: %g %% %s",
        reservation.id,
        reservation.name,
        verb,
        user or "?",
        reservation.cpu_quota,
        span(
            int(reservation.start_time.timestamp()),
            int(reservation.end_time.timestamp()),
        ),
    )
    for notice in report.notices:
        logger.info("Reservation %r: %s", reservation.name, notice)


def set_enabled(
    reservation: Reservation, enabled: bool, user: str = "", *, now: int | None = None
) -> Report:
    """Enable (after a full review) or disable a reservation."""
    if enabled == reservation.enabled:
        return Report()
    draft = Draft.of(reservation, enabled=enabled)
    _, report = save(draft, user, now=now)
    return report


def delete(reservation: Reservation, user: str = "") -> None:
    """Delete a reservation for good (archiving keeps expired ones instead)."""
    with transaction.atomic():
        reservation.delete()
        Revision.bump(REVISION)
    logger.info("Reservation %r deleted by %s", reservation.name, user or "?")


def _has_future(reservation: Reservation, now: int | None = None) -> bool:
    now = int(time.time()) if now is None else now
    try:
        end = last_end(reservation.series())
    except RecurrenceError:
        return True  # kept for the operator to fix; the profile skips it
    return end is None or end > now


def archive_expired(now: int | None = None) -> int:
    """Mark reservations whose last slot has ended as archived.

    Archived reservations stay in the database and the list ("expired"), but
    leave the planner and conflict checks. Returns how many were archived.
    """
    now = int(time.time()) if now is None else now
    expired = [
        r.id
        for r in Reservation.objects.filter(archived=False)
        if not _has_future(r, now)
    ]
    if not expired:
        return 0
    with transaction.atomic():
        Reservation.objects.filter(id__in=expired).update(
            archived=True, archived_at=timezone.now()
        )
        Revision.bump(REVISION)
    logger.info("Archived %d expired reservations", len(expired))
    return len(expired)


# -- phases -------------------------------------------------------------------


def phase(reservation: Reservation, now: int | None = None) -> str:
    """``active`` (a slot is on now), ``future`` or ``expired``, by time."""
    now = int(time.time()) if now is None else now
    if reservation.archived:
        return "expired"
    if next_occurrence(reservation, now) is None:
        return "expired"
    series = reservation.series()
    return "active" if occurrences(series, now, now + 1) else "future"


def next_occurrence(reservation: Reservation, now: int | None = None):
    """The slot on now, else the next one; ``None`` when none is left (or
    the stored rule cannot be used)."""
    now = int(time.time()) if now is None else now
    series = reservation.series()
    try:
        current = occurrences(series, now, now + 1)
        if current:
            return current[0]
        return next(iterate(series, now), None)
    except RecurrenceError:
        return None


def active_keys(now: int | None = None) -> set[str]:
    """Ids of the reservations honoured at second ``now``."""
    from reservations.profile import honoured

    now = int(time.time()) if now is None else now
    kept, _ = honoured(now, now + 1)
    return {b.key for b in kept}


ORDERS = {
    "start": ("start_time", "name"),
    "-start": ("-start_time", "name"),
    "name": ("name", "start_time"),
    "priority": ("-priority", "start_time"),
}


def ordered(order: str = "start"):
    """Every reservation, archived ones included, in a list order."""
    return Reservation.objects.order_by(*ORDERS.get(order, ORDERS["start"]))
