"""Reservations: validation, conflicts, displacement, feasibility, archiving,
and the profile the scheduler reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from cpusched import config
from cpusched.models import Revision
from monitoring.models import Sample
from reservations import service
from reservations.models import Reservation
from reservations.profile import future_profile
from reservations.service import Draft, ReservationError

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
BERLIN = "Europe/Berlin"


def at(hours: float, base: datetime = NOW) -> datetime:
    return base + timedelta(hours=hours)


def draft(name: str = "backup", start: float = 2, hours: float = 1, **fields) -> Draft:
    fields.setdefault("cpu_quota", 50.0)
    return Draft(name=name, start_time=at(start), end_time=at(start + hours), **fields)


def save(d: Draft, now: int = NOW_TS) -> Reservation:
    reservation, _ = service.save(d, "tester", now=now)
    return reservation


def refused(d: Draft, now: int = NOW_TS) -> dict[str, list[str]]:
    with pytest.raises(ReservationError) as caught:
        service.save(d, "tester", now=now)
    return caught.value.as_dict()


def short_windows(**more) -> None:
    """One-hour average window, two-hour peak window with 60 peak seconds."""
    config.apply(
        {
            "limits.avg_window_hours": 1,
            "limits.peak_window_hours": 2,
            "limits.peak_max_duration": 60,
            **more,
        }
    )


def store_history(cpu: float, seconds: int, end: int = NOW_TS) -> None:
    start = end - seconds
    Sample.objects.bulk_create(
        Sample(timestamp=datetime.fromtimestamp(start + i, UTC), cpu_usage=cpu)
        for i in range(seconds)
    )


# -- fields ---------------------------------------------------------------------


def test_an_end_before_the_start_is_refused_at_the_end_field():
    errors = refused(draft(hours=-1))

    assert errors["end_time"] == [
        "End 2026-03-10 09:00 must be after start 2026-03-10 10:00"
    ]


def test_a_slot_shorter_than_the_minimum_duration_is_refused():
    errors = refused(draft(hours=2 / 60))

    assert errors["end_time"] == [
        "A slot of 2 min is refused: expected from 5 minutes "
        "(reservation.min_duration) to 24 hours (reservation.max_duration)"
    ]


def test_a_slot_longer_than_the_maximum_duration_is_refused():
    errors = refused(draft(hours=25))

    assert "A slot of 25 h is refused" in errors["end_time"][0]


def test_a_percent_outside_the_absolute_limits_is_refused_with_the_range():
    errors = refused(draft(cpu_quota=97.0))

    assert errors["cpu_quota"] == [
        "CPU 97.0 % is refused: expected from 5 % (limits.absolute_min_cpu) "
        "to 95 % (limits.absolute_max_cpu)"
    ]


def test_a_priority_outside_one_to_ten_is_refused():
    errors = refused(draft(priority=11))

    assert errors["priority"] == ["Priority 11 is refused: expected 1 to 10"]


def test_an_unsupported_rule_is_refused_at_the_recurrence_field():
    errors = refused(draft(recurrence="FREQ=HOURLY"))

    assert "FREQ='HOURLY' is not supported" in errors["recurrence"][0]


def test_a_first_slot_the_rule_does_not_produce_is_refused():
    # 10 March 2026 is a Tuesday.
    errors = refused(draft(recurrence="FREQ=WEEKLY;BYDAY=MO"))

    assert (
        "is not one the rule FREQ=WEEKLY;BYDAY=MO produces" in errors["recurrence"][0]
    )


def test_a_series_starting_at_a_nonexistent_local_time_is_refused():
    first = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, stored
    d = Draft(
        name="night",
        start_time=first,
        end_time=first + timedelta(minutes=30),
        cpu_quota=20,
        recurrence="FREQ=DAILY",
        time_zone=BERLIN,
    )
    # 01:30 UTC is a real instant; only its wall clock matters, and 03:30
    # exists: the series is accepted and keeps 03:30.
    assert service.review(d, now=NOW_TS).ok

    with pytest.raises(ValueError, match="does not exist in Europe/Berlin"):
        service.to_instant(datetime(2026, 3, 29, 2, 30), BERLIN)


def test_a_naive_ambiguous_time_takes_the_first_instant_with_a_note():
    instant, note = service.to_instant(datetime(2026, 10, 25, 2, 30), BERLIN)

    assert instant == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert "happens twice" in note


def test_a_reservation_ending_in_the_past_is_refused():
    errors = refused(draft(start=-3))

    assert "in the past" in errors["end_time"][0]


def test_a_reservation_starting_beyond_the_horizon_names_the_limit():
    d = Draft(
        name="far",
        start_time=datetime(2027, 3, 20, 10, 0, tzinfo=UTC),
        end_time=datetime(2027, 3, 20, 11, 0, tzinfo=UTC),
        cpu_quota=50.0,
        time_zone="UTC",
    )

    errors = refused(d)

    assert errors == {
        "start_time": [
            "Starts on 2027-03-20, 366 days or more ahead: reservations can be "
            "made at most 366 days ahead (a slot must start before 2027-03-11 08:00)"
        ]
    }


@pytest.mark.parametrize(
    ("year", "day"), [(3000, "3001-01-01"), (9999, "9999-12-31 (UTC)")]
)
@pytest.mark.parametrize("rule", ["", "FREQ=DAILY"])
def test_a_start_in_a_far_year_is_refused_without_overflowing(year, day, rule):
    # 22:00 UTC on 31 December is the next year in Tokyo; in 9999 that year
    # does not exist, so the day is given in UTC.
    d = Draft(
        name="far",
        start_time=datetime(year, 12, 31, 22, 0, tzinfo=UTC),
        end_time=datetime(year, 12, 31, 23, 0, tzinfo=UTC),
        cpu_quota=50.0,
        recurrence=rule,
        time_zone="Asia/Tokyo",
    )

    errors = refused(d)

    assert errors["start_time"][0].startswith(f"Starts on {day}, 366 days")
    assert "at most 366 days ahead" in errors["start_time"][0]


def test_a_series_whose_next_slot_is_beyond_the_horizon_says_so():
    d = draft(
        start=-24 * 10,
        recurrence="FREQ=MONTHLY;INTERVAL=24",
        time_zone="UTC",
    )

    errors = refused(d)

    assert errors["start_time"][0].startswith("The next slot starts on 2028-02-28")
    assert "in the past" not in errors["start_time"][0]


def test_a_reservation_just_inside_the_horizon_is_accepted():
    start = at(366 * 24 - 2)

    reservation = save(
        Draft(name="edge", start_time=start, end_time=at(1, start), cpu_quota=50.0)
    )

    assert reservation.start_time == start


# -- conflicts -------------------------------------------------------------------


def test_an_overlap_is_refused_naming_the_other_reservation():
    save(draft("backup", start=2, hours=2, priority=5))

    errors = refused(draft("report", start=3, hours=2, priority=5))

    assert errors["start_time"] == [
        "Overlaps 'backup' (priority 5) from 10:00 to 12:00 on Tue 10 Mar 2026: "
        "overlapping reservations are refused (reservation.allow_overlap is off); "
        "only a higher priority displaces another, and this one has priority 5"
    ]


def test_slots_that_only_touch_do_not_overlap():
    save(draft("backup", start=2, hours=2))

    save(draft("report", start=4, hours=1))

    assert Reservation.objects.count() == 2


def test_a_higher_priority_displaces_the_lower_for_the_overlapping_slot_only():
    backup = save(
        draft("backup", start=2, hours=1, priority=3, recurrence="FREQ=DAILY;COUNT=3")
    )

    urgent, report = service.save(
        draft("urgent", start=24 + 1.5, hours=1, priority=9, cpu_quota=60),
        "tester",
        now=NOW_TS,
    )

    assert report.notices == [
        "Displaces 'backup' (priority 3) from 10:00 to 11:00 on Wed 11 Mar 2026: "
        "those occurrences are skipped while this reservation overlaps them; "
        "'backup' keeps its other occurrences and gets these back if this one "
        "moves, is disabled or deleted"
    ]
    names = [(s.name, s.start) for s in future_profile(NOW_TS, NOW_TS + 3 * 86400)]
    assert names == [
        ("backup", NOW_TS + 2 * 3600),
        ("urgent", NOW_TS + int(25.5 * 3600)),
        ("backup", NOW_TS + 50 * 3600),
    ]

    service.delete(urgent)

    assert len(future_profile(NOW_TS, NOW_TS + 3 * 86400)) == 3
    assert backup.pk is not None


def test_without_priority_override_a_higher_priority_is_refused_too():
    config.apply({"reservation.priority_override": False})
    save(draft("backup", start=2, hours=1, priority=3))

    errors = refused(draft("urgent", start=2.5, hours=1, priority=9))

    assert errors["start_time"][0].endswith("(reservation.allow_overlap is off)")


def test_conflicts_are_computed_on_utc_instants_across_a_clock_change():
    # Daily 09:00 Berlin: 08:00 UTC before 29 March, 07:00 UTC after.
    first = datetime(2026, 3, 27, 8, tzinfo=UTC)
    save(
        Draft(
            name="morning",
            start_time=first,
            end_time=first + timedelta(hours=1),
            cpu_quota=40,
            recurrence="FREQ=DAILY",
            time_zone=BERLIN,
        ),
        now=int(first.timestamp()) - 3600,
    )
    now = int(first.timestamp()) - 3600

    before = datetime(2026, 3, 28, 7, tzinfo=UTC)
    after = datetime(2026, 3, 30, 7, tzinfo=UTC)
    fits = Draft("x", before, before + timedelta(hours=1), 30, time_zone=BERLIN)
    clashes = Draft("y", after, after + timedelta(hours=1), 30, time_zone=BERLIN)

    assert service.review(fits, now=now).ok
    problems = service.review(clashes, now=now).problems
    assert [p.field for p in problems] == ["start_time"]
    assert "Overlaps 'morning'" in problems[0].message


def test_with_overlaps_allowed_both_are_honoured_and_add_up():
    config.apply({"reservation.allow_overlap": True})
    save(draft("a", start=2, hours=2, cpu_quota=30))

    save(draft("b", start=3, hours=2, cpu_quota=40))

    slots = future_profile(NOW_TS, NOW_TS + 86400)
    assert [(s.name, s.percent) for s in slots] == [("a", 30.0), ("b", 40.0)]


def test_more_concurrent_reservations_than_allowed_are_refused():
    config.apply({"reservation.allow_overlap": True, "reservation.max_concurrent": 2})
    save(draft("a", start=2, hours=3, cpu_quota=10))
    save(draft("b", start=3, hours=3, cpu_quota=10))

    errors = refused(draft("c", start=4, hours=3, cpu_quota=10))

    assert errors["start_time"] == [
        "3 reservations would be active at once from 12:00 to 13:00 on Tue 10 Mar "
        "2026: at most 2 are allowed (reservation.max_concurrent)"
    ]


def test_overlapping_percents_above_the_absolute_maximum_are_refused():
    config.apply({"reservation.allow_overlap": True})
    save(draft("a", start=2, hours=1, cpu_quota=60))

    errors = refused(draft("b", start=2, hours=1, cpu_quota=40))

    assert "100 % would be reserved" in errors["cpu_quota"][0]


# -- feasibility ---------------------------------------------------------------------


def test_a_reservation_the_average_budget_cannot_hold_is_refused_with_a_fit():
    short_windows()
    store_history(25.0, 3600)

    d = draft("heavy", start=0.25, hours=0.5, cpu_quota=80)
    errors = refused(d)

    # The worst window, 07:45 to 08:45, holds 15 min of history at 25 %,
    # 15 min of floor at 5 % and the slot: 684 CPU-s over the 1026 CPU-s
    # budget (1 h x 30 % less the 5 % margin); (1026 - 225 - 45) / 1800 s
    # leaves 42 %.
    message = errors["cpu_quota"][0]
    assert message == (
        "From 08:15 to 08:45 on Tue 10 Mar 2026 at 80 % needs 0.2 CPU-hours more "
        "than the 1-hour budget allows (the window from 07:45 to 08:45 on Tue 10 "
        "Mar 2026); 42 % would fit"
    )
    fit = float(re.search(r"; ([\d.]+) % would fit", message).group(1))
    assert service.review(draft("heavy", 0.25, 0.5, cpu_quota=fit), now=NOW_TS).ok
    assert not service.review(
        draft("heavy", 0.25, 0.5, cpu_quota=fit + 0.5), now=NOW_TS
    ).ok


def test_a_reservation_at_the_peak_threshold_needs_peak_seconds():
    short_windows()

    errors = refused(draft("burst", start=0.5, hours=5 / 60, cpu_quota=95))

    # 300 peak seconds against a budget of 60 less the 5 % margin (57 s).
    assert "needs 243 peak seconds (at or above 95 %)" in errors["cpu_quota"][0]


def test_peak_seconds_beyond_the_peak_budget_are_refused():
    short_windows(**{"limits.peak_max_duration": 600, "limits.peak_window_hours": 2})
    save(draft("burst", start=0.5, hours=5 / 60, cpu_quota=95))

    errors = refused(draft("burst2", start=1, hours=5 / 60, cpu_quota=95))

    message = errors["cpu_quota"][0]
    assert "needs 30 peak seconds (at or above 95 %) more than the 2-hour peak " in (
        message
    )
    assert "budget of 570 s allows" in message
    assert message.endswith("94.99 % would fit")


def test_a_recurring_reservation_reports_what_fits_every_slot():
    d = draft(
        "nightly", start=48, hours=4, cpu_quota=95, recurrence="FREQ=DAILY;COUNT=30"
    )

    problems = service.review(d, now=NOW_TS).problems

    assert [p.field for p in problems] == ["cpu_quota"]
    assert problems[0].message.endswith("% would fit for every slot of the series")


# -- changes, revisions, archive ------------------------------------------------------


def test_every_change_bumps_the_reservations_revision():
    start = Revision.current("reservations")
    reservation = save(draft())
    service.set_enabled(reservation, False, now=NOW_TS)
    reservation.refresh_from_db()
    service.delete(reservation)

    assert Revision.current("reservations") == start + 3


def test_enabling_a_disabled_reservation_is_reviewed_like_a_save():
    save(draft("backup", start=2, hours=2, priority=5))
    other = save(draft("report", start=3, hours=2, priority=5, enabled=False))

    with pytest.raises(ReservationError, match="Overlaps 'backup'"):
        service.set_enabled(other, True, now=NOW_TS)
    other.refresh_from_db()
    assert other.enabled is False


def test_expired_one_off_reservations_are_archived_and_leave_the_profile():
    done = save(draft("done", start=1, hours=1))
    running = save(draft("daily", start=3, hours=1, recurrence="FREQ=DAILY"))
    counted = save(draft("thrice", start=5, hours=0.5, recurrence="FREQ=DAILY;COUNT=3"))
    revision = Revision.current("reservations")

    archived = service.archive_expired(now=NOW_TS + 3 * 86400)

    assert archived == 2
    done.refresh_from_db()
    counted.refresh_from_db()
    running.refresh_from_db()
    assert (done.archived, counted.archived, running.archived) == (True, True, False)
    assert done.archived_at is not None
    assert Revision.current("reservations") == revision + 1
    assert service.phase(done, NOW_TS + 3 * 86400) == "expired"
    assert Reservation.objects.filter(id=done.id).exists()


def test_archiving_with_nothing_expired_changes_nothing():
    save(draft())
    revision = Revision.current("reservations")

    assert service.archive_expired(now=NOW_TS) == 0
    assert Revision.current("reservations") == revision


def test_the_schedule_command_creates_the_archiving_schedule():
    from django_q.models import Schedule

    call_command("reservations_schedule")

    schedule = Schedule.objects.get(name="reservations-archive")
    assert schedule.func == "reservations.tasks.archive"
    assert schedule.minutes == 5


# -- profile ----------------------------------------------------------------------


def test_the_profile_expands_recurring_slots_over_the_requested_range():
    save(draft("daily", start=2, hours=1, cpu_quota=40, recurrence="FREQ=DAILY"))

    slots = future_profile(NOW_TS, NOW_TS + 3 * 86400)

    assert [s.start - NOW_TS for s in slots] == [7200, 93600, 180000]
    assert all(s.end - s.start == 3600 and s.percent == 40.0 for s in slots)
    assert slots[0].priority == 5 and slots[0].name == "daily"


def test_the_profile_includes_a_slot_already_running():
    save(draft("now", start=-0.5, hours=1), now=NOW_TS - 3600)

    slots = future_profile(NOW_TS, NOW_TS + 60)

    assert [s.name for s in slots] == ["now"]


def test_the_profile_is_empty_while_reservations_are_switched_off():
    save(draft())
    config.apply({"reservation.enabled": False})

    assert future_profile(NOW_TS, NOW_TS + 86400) == []


def test_disabled_and_archived_reservations_are_not_in_the_profile():
    save(draft("off", start=2, enabled=False))
    gone = save(draft("gone", start=4))
    Reservation.objects.filter(id=gone.id).update(archived=True)

    assert future_profile(NOW_TS, NOW_TS + 86400) == []


def test_a_row_with_a_broken_rule_is_skipped_not_fatal():
    Reservation.objects.create(
        name="broken",
        start_time=at(2),
        end_time=at(3),
        cpu_quota=20,
        recurrence="FREQ=SECONDLY",
    )

    assert future_profile(NOW_TS, NOW_TS + 86400) == []
    assert service.archive_expired(now=NOW_TS + 10 * 86400) == 0
    assert service.phase(Reservation.objects.get(), NOW_TS) == "expired"


def test_a_rule_without_a_zone_follows_the_operators_zone(settings):
    settings.TIME_ZONE = BERLIN
    first = datetime(2026, 3, 27, 8, tzinfo=UTC)  # 09:00 CET
    d = Draft("morning", first, first + timedelta(hours=1), 30, recurrence="FREQ=DAILY")

    reservation, _ = service.save(d, now=int(first.timestamp()) - 60)

    assert reservation.time_zone == BERLIN
    slots = future_profile(int(first.timestamp()), int(first.timestamp()) + 4 * 86400)
    assert [datetime.fromtimestamp(s.start, UTC).hour for s in slots] == [8, 8, 7, 7, 7]


def test_the_spring_forward_shift_is_told_to_the_operator_and_planned():
    first = datetime(2026, 3, 27, 1, 30, tzinfo=UTC)  # 02:30 CET
    now = int(first.timestamp()) - 60
    d = Draft(
        "night",
        first,
        first + timedelta(minutes=30),
        30,
        recurrence="FREQ=DAILY;COUNT=4",
        time_zone=BERLIN,
    )

    _, report = service.save(d, now=now)

    assert report.notices == [
        "2026-03-29 02:30 does not exist in Europe/Berlin (the clocks go forward); "
        "this slot starts at 03:30 instead, shifted by the 1-hour gap"
    ]
    slots = future_profile(now, now + 5 * 86400)
    assert [s.start - int(first.timestamp()) for s in slots] == [
        0,
        86400,
        2 * 86400,  # 03:30 CEST is 01:30 UTC, like 02:30 CET
        3 * 86400 - 3600,  # 02:30 CEST
    ]
    assert all(s.end - s.start == 1800 for s in slots)


def test_the_fall_back_night_has_one_slot_at_0230():
    first = datetime(2026, 10, 24, 0, 30, tzinfo=UTC)  # 02:30 CEST
    now = int(first.timestamp()) - 60
    d = Draft(
        "night",
        first,
        first + timedelta(minutes=30),
        30,
        recurrence="FREQ=DAILY;COUNT=3",
        time_zone=BERLIN,
    )

    _, report = service.save(d, now=now)

    slots = future_profile(now, now + 4 * 86400)
    assert len(slots) == 3
    assert slots[1].start == int(datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp())
    assert "happens twice" in report.notices[0]
