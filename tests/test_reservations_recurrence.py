"""Recurrence: rules, expansion and local time across daylight-saving changes.

Europe/Berlin in 2026: clocks go forward on 29 March (02:00 CET becomes
03:00 CEST) and back on 25 October (03:00 CEST becomes 02:00 CET).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reservations.recurrence import (
    RecurrenceError,
    Series,
    iterate,
    last_end,
    occurrences,
    parse_rule,
    resolve_local,
    zone,
)

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ts(*args: int) -> int:
    return int(utc(*args).timestamp())


def starts(series: Series, count: int) -> list[datetime]:
    found = []
    for occurrence in iterate(series):
        found.append(datetime.fromtimestamp(occurrence.start, UTC))
        if len(found) == count:
            break
    return found


# -- spring forward -------------------------------------------------------------


def test_a_daily_nine_oclock_slot_stays_at_nine_local_across_spring_forward():
    # 09:00 CET on 27 March is 08:00 UTC.
    series = Series(utc(2026, 3, 27, 8), 3600, "FREQ=DAILY", BERLIN)

    found = starts(series, 4)

    assert found == [
        utc(2026, 3, 27, 8),
        utc(2026, 3, 28, 8),
        utc(2026, 3, 29, 7),
        utc(2026, 3, 30, 7),
    ]
    local = [f.astimezone(zone(BERLIN)).hour for f in found]
    assert local == [9, 9, 9, 9]


def test_a_daily_nine_oclock_slot_stays_at_nine_local_across_fall_back():
    # 09:00 CEST on 24 October is 07:00 UTC; after the change it is 08:00 UTC.
    series = Series(utc(2026, 10, 24, 7), 3600, "FREQ=DAILY", BERLIN)

    found = starts(series, 3)

    assert found == [utc(2026, 10, 24, 7), utc(2026, 10, 25, 8), utc(2026, 10, 26, 8)]


def test_a_slot_at_0230_on_the_spring_forward_night_is_shifted_by_the_gap():
    # 02:30 CET on 28 March is 01:30 UTC; 02:30 does not exist on 29 March.
    series = Series(utc(2026, 3, 28, 1, 30), 1800, "FREQ=DAILY;COUNT=3", BERLIN)

    found = list(iterate(series))

    moved = found[1]
    assert moved.start == ts(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert moved.end - moved.start == 1800
    assert "does not exist" in moved.note
    assert "03:30" in moved.note
    assert found[2].start == ts(2026, 3, 30, 0, 30)  # 02:30 CEST again
    assert found[0].note == "" and found[2].note == ""


def test_a_slot_at_0230_on_the_fall_back_night_happens_once_at_the_first_0230():
    series = Series(utc(2026, 10, 24, 0, 30), 1800, "FREQ=DAILY;COUNT=3", BERLIN)

    found = list(iterate(series))

    on_the_night = [o for o in found if o.start // 86400 == ts(2026, 10, 25) // 86400]
    assert len(on_the_night) == 1
    assert on_the_night[0].start == ts(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert "happens twice" in on_the_night[0].note
    assert [o.start for o in found] == [
        ts(2026, 10, 24, 0, 30),
        ts(2026, 10, 25, 0, 30),
        ts(2026, 10, 26, 1, 30),
    ]


def test_durations_are_real_elapsed_time_across_the_change():
    # 01:00 to 04:00 local is three real hours, also on 29 March.
    series = Series(utc(2026, 3, 28, 0), 3 * 3600, "FREQ=DAILY;COUNT=2", BERLIN)

    found = list(iterate(series))

    assert [o.end - o.start for o in found] == [10800, 10800]
    night = found[1]
    assert night.start == ts(2026, 3, 29, 0)  # 01:00 CET
    assert night.end == ts(2026, 3, 29, 3)  # 05:00 CEST: three hours later


def test_resolving_a_plain_local_time_has_no_note():
    instant, note = resolve_local(datetime(2026, 6, 1, 12), zone(BERLIN))

    assert instant == utc(2026, 6, 1, 10)
    assert note == ""


# -- rules ----------------------------------------------------------------------


def test_a_weekly_rule_on_chosen_days_repeats_on_those_days_only():
    # Monday 2 March 2026, 10:00 UTC.
    series = Series(utc(2026, 3, 2, 10), 3600, "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=4", "UTC")

    found = [d.strftime("%a %d") for d in starts(series, 4)]

    assert found == ["Mon 02", "Wed 04", "Mon 09", "Wed 11"]


def test_a_monthly_rule_keeps_the_day_of_the_month():
    series = Series(utc(2026, 1, 15, 6), 3600, "FREQ=MONTHLY;COUNT=3", "UTC")

    assert starts(series, 3) == [
        utc(2026, 1, 15, 6),
        utc(2026, 2, 15, 6),
        utc(2026, 3, 15, 6),
    ]


def test_a_date_only_until_includes_that_whole_local_day():
    series = Series(utc(2026, 5, 1, 20), 3600, "FREQ=DAILY;UNTIL=20260503", BERLIN)

    assert len(list(iterate(series))) == 3
    assert last_end(series) == ts(2026, 5, 3, 21)


def test_an_until_in_utc_is_compared_as_an_instant():
    series = Series(utc(2026, 5, 1, 20), 3600, "FREQ=DAILY;UNTIL=20260502T195959Z")

    assert len(list(iterate(series))) == 1


def test_a_rule_without_an_end_has_no_last_end():
    series = Series(utc(2026, 5, 1, 20), 3600, "FREQ=DAILY")

    assert last_end(series) is None


def test_a_one_off_slot_is_its_own_only_occurrence():
    series = Series(utc(2026, 5, 1, 20), 600)

    assert [(o.start, o.end) for o in iterate(series)] == [
        (ts(2026, 5, 1, 20), ts(2026, 5, 1, 20, 10))
    ]
    assert last_end(series) == ts(2026, 5, 1, 20, 10)


def test_occurrences_returns_the_ones_overlapping_the_range_far_ahead():
    series = Series(utc(2026, 1, 1, 8), 3600, "FREQ=DAILY", "UTC")

    found = occurrences(series, ts(2026, 6, 1, 8, 30), ts(2026, 6, 2, 8, 0))

    assert [o.start for o in found] == [ts(2026, 6, 1, 8)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FREQ=HOURLY", "FREQ='HOURLY' is not supported"),
        ("FREQ=DAILY;BYHOUR=3", "BYHOUR is not supported"),
        ("FREQ=DAILY;BYDAY=MO", "BYDAY is supported with FREQ=WEEKLY only"),
        ("FREQ=WEEKLY;BYDAY=XX", "BYDAY='XX' is refused"),
        ("FREQ=DAILY;COUNT=0", "COUNT='0' is refused"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20260101", "COUNT and UNTIL exclude each other"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL='TOMORROW' is refused"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL='0' is refused"),
        ("FREQ", "is not KEY=VALUE"),
    ],
)
def test_unsupported_rules_are_refused_with_what_is_allowed(text, message):
    with pytest.raises(RecurrenceError, match=message.replace("(", r"\(")):
        parse_rule(text)


def test_a_rule_is_normalised_to_canonical_text():
    rule = parse_rule("RRULE:freq=weekly;byday=we,mo;count=3")

    assert rule is not None
    assert rule.text() == "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=3"


def test_an_unknown_time_zone_is_refused_with_an_example():
    with pytest.raises(RecurrenceError, match="Unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
