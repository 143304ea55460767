"""Recurrence: when a reservation's slots happen, as UTC instants.

Pure logic: no Django models. A :class:`Series` is a first slot (an instant
and a real elapsed duration), an optional RFC 5545 RRULE and the time zone
whose wall clock the rule follows.

The rules for local time, documented for operators in docs/reservations.md:

- every occurrence starts at the first slot's local wall-clock time and lasts
  the first slot's real elapsed duration (a 1-hour slot is 3600 s, even on
  the night the clocks change);
- when that wall-clock time does not exist (02:30 on the night clocks go
  forward), the occurrence is shifted forward by the length of the gap
  (to 03:30) and carries a note saying so;
- when it happens twice (02:30 on the night clocks go back), the occurrence
  happens once, at the first of the two instants, and carries a note;
- a date-only ``UNTIL`` includes that whole local day; an ``UNTIL`` in UTC
  (``...Z``) is compared as an instant.

Errors: :class:`RecurrenceError` says what was wrong with the rule text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

FREQUENCIES = {"DAILY": rrule.DAILY, "WEEKLY": rrule.WEEKLY, "MONTHLY": rrule.MONTHLY}
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
KEYS = ("FREQ", "INTERVAL", "BYDAY", "COUNT", "UNTIL")
MAX_COUNT = 10_000
MAX_INTERVAL = 366


class RecurrenceError(ValueError):
    """A recurrence rule or time zone that cannot be used."""


@dataclass(frozen=True)
class Rule:
    """A parsed RRULE of the supported subset."""

    freq: str
    interval: int = 1
    weekdays: tuple[str, ...] = ()
    count: int | None = None
    until: str | None = None

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.until is not None

    def text(self) -> str:
        """The rule as canonical RRULE text (no ``RRULE:`` prefix)."""
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.weekdays:
            parts.append("BYDAY=" + ",".join(self.weekdays))
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until}")
        return ";".join(parts)


@dataclass(frozen=True)
class Series:
    """A first slot and how it repeats.

    ``start`` is the first slot's start (aware), ``duration_s`` its real
    elapsed length, ``rule`` RRULE text or ``""`` for a one-off slot.
    """

    start: datetime
    duration_s: int
    rule: str = ""
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Occurrence:
    """One slot in UNIX seconds, half-open ``[start, end)``.

    ``note`` explains a daylight-saving adjustment; empty when there was none.
    """

    start: int
    end: int
    note: str = ""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; RecurrenceError when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise RecurrenceError(
            f"Unknown time zone {name!r}: expected an IANA name such as "
            "'Europe/Berlin' or 'UTC'"
        ) from None


def parse_rule(text: str) -> Rule | None:
    """Parse RRULE text of the supported subset; ``None`` for an empty rule.

    Supported: FREQ (DAILY, WEEKLY or MONTHLY), INTERVAL, BYDAY (plain
    weekdays, weekly rules only), and at most one of COUNT and UNTIL.
    """
    text = (text or "").strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if not text:
        return None

    fields = _fields(text)
    freq = fields.pop("FREQ", "")
    if freq not in FREQUENCIES:
        raise RecurrenceError(
            f"FREQ={freq!r} is not supported: expected DAILY, WEEKLY or MONTHLY"
        )
    rule = Rule(
        freq=freq,
        interval=_interval(fields.pop("INTERVAL", "1")),
        weekdays=_weekdays(fields.pop("BYDAY", ""), freq),
        count=_count(fields.pop("COUNT", None)),
        until=_until(fields.pop("UNTIL", None)),
    )
    if rule.count is not None and rule.until is not None:
        raise RecurrenceError("COUNT and UNTIL exclude each other: give one of them")
    return rule


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().upper()
        if not sep or not value.strip():
            raise RecurrenceError(f"{part!r} in the rule is not KEY=VALUE")
        if key not in KEYS:
            raise RecurrenceError(
                f"{key} is not supported in a rule: use only " + ", ".join(KEYS)
            )
        if key in fields:
            raise RecurrenceError(f"{key} appears twice in the rule")
        fields[key] = value.strip().upper()
    return fields


def _interval(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_INTERVAL:
        raise RecurrenceError(
            f"INTERVAL={value!r} is refused: expected a whole number from 1 to "
            f"{MAX_INTERVAL}"
        )
    return int(value)


def _weekdays(value: str, freq: str) -> tuple[str, ...]:
    if not value:
        return ()
    if freq != "WEEKLY":
        raise RecurrenceError("BYDAY is supported with FREQ=WEEKLY only")
    days = [d.strip() for d in value.split(",")]
    wrong = [d for d in days if d not in WEEKDAYS]
    if wrong:
        raise RecurrenceError(
            f"BYDAY={value!r} is refused: expected weekdays among " + ",".join(WEEKDAYS)
        )
    return tuple(sorted(set(days), key=WEEKDAYS.index))


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
        raise RecurrenceError(
            f"COUNT={value!r} is refused: expected a whole number from 1 to {MAX_COUNT}"
        )
    return int(value)


def _until(value: str | None) -> str | None:
    if value is None:
        return None
    for form in ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S", "%Y%m%d"):
        try:
            datetime.strptime(value, form)
            return value
        except ValueError:
            continue
    raise RecurrenceError(
        f"UNTIL={value!r} is refused: expected YYYYMMDD, YYYYMMDDTHHMMSS (local "
        "time) or YYYYMMDDTHHMMSSZ (UTC)"
    )


def until_local(rule: Rule, tz: ZoneInfo) -> datetime | None:
    """The rule's UNTIL as a naive local wall-clock time (inclusive)."""
    if rule.until is None:
        return None
    value = rule.until
    if value.endswith("Z"):
        instant = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return instant.astimezone(tz).replace(tzinfo=None, fold=0)
    if "T" in value:
        return datetime.strptime(value, "%Y%m%dT%H%M%S")
    day = datetime.strptime(value, "%Y%m%d")
    return day + timedelta(days=1, seconds=-1)


# -- local wall clock <-> UTC ---------------------------------------------------


def resolve_local(naive: datetime, tz: ZoneInfo) -> tuple[datetime, str]:
    """A local wall-clock time as an aware UTC instant, with a note.

    Nonexistent times move forward by the gap; ambiguous ones take the first
    instant. The note is empty when the time was plain.
    """
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    instant = first.astimezone(UTC)
    back = instant.astimezone(tz).replace(tzinfo=None)
    when = f"{naive:%Y-%m-%d %H:%M}"

    if back != naive:
        gap = first.utcoffset() - second.utcoffset()
        gap = -gap if gap < timedelta(0) else gap
        shifted = naive + gap
        return instant, (
            f"{when} does not exist in {tz.key} (the clocks go forward); this "
            f"slot starts at {shifted:%H:%M} instead, shifted by the "
            f"{_length(gap)} gap"
        )
    if first.utcoffset() != second.utcoffset():
        return instant, (
            f"{when} happens twice in {tz.key} (the clocks go back); this slot "
            f"happens once, at the first one ({first:%H:%M %Z}, "
            f"{instant:%H:%M} UTC)"
        )
    return instant, ""


def nonexistent(naive: datetime, tz: ZoneInfo) -> bool:
    """Whether a local wall-clock time falls in a daylight-saving gap."""
    instant = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return instant.astimezone(tz).replace(tzinfo=None) != naive


def _length(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 60 == 0:
        return f"{minutes // 60}-hour"
    return f"{minutes}-minute"


# -- expansion ------------------------------------------------------------------


def occurrences(series: Series, start_ts: int, end_ts: int) -> list[Occurrence]:
    """Every occurrence overlapping ``[start_ts, end_ts)``, in order."""
    found = []
    for occurrence in iterate(series, start_ts - series.duration_s):
        if occurrence.start >= end_ts:
            break
        if occurrence.end > start_ts:
            found.append(occurrence)
    return found


def iterate(series: Series, after_ts: int | None = None) -> Iterator[Occurrence]:
    """Occurrences in order, from the first one starting after ``after_ts``."""
    rule = parse_rule(series.rule)
    first_ts = int(series.start.timestamp())
    if rule is None:
        if after_ts is None or first_ts > after_ts:
            yield Occurrence(first_ts, first_ts + series.duration_s)
        return

    tz = zone(series.time_zone)
    local = series.start.astimezone(tz).replace(tzinfo=None, fold=0, microsecond=0)
    for naive in _local_starts(rule, local, tz, after_ts):
        instant, note = resolve_local(naive, tz)
        start = int(instant.timestamp())
        if after_ts is not None and start <= after_ts:
            continue
        yield Occurrence(start, start + series.duration_s, note)


def _local_starts(
    rule: Rule, local: datetime, tz: ZoneInfo, after_ts: int | None
) -> Iterator[datetime]:
    """Naive local start times of the rule, skipping ahead cheaply to ``after_ts``."""
    kwargs = {"dtstart": local, "interval": rule.interval}
    if rule.weekdays:
        kwargs["byweekday"] = [WEEKDAYS.index(d) for d in rule.weekdays]
    if rule.count is not None:
        kwargs["count"] = rule.count
    until = until_local(rule, tz)
    if until is not None:
        kwargs["until"] = until
    starts = rrule.rrule(FREQUENCIES[rule.freq], **kwargs)

    if after_ts is None or rule.count is not None:
        # COUNT counts from the first occurrence, so no skipping ahead.
        yield from starts
        return
    # A day of margin covers any UTC offset and daylight-saving shift.
    after_local = datetime.fromtimestamp(after_ts, tz).replace(tzinfo=None)
    yield from starts.xafter(after_local - timedelta(days=1), inc=True)


def last_end(series: Series) -> int | None:
    """When the last occurrence ends; ``None`` for a rule without an end."""
    rule = parse_rule(series.rule)
    if rule is not None and not rule.bounded:
        return None
    final = None
    for occurrence in iterate(series):
        final = occurrence
    if final is None:
        return int(series.start.timestamp()) + series.duration_s
    return final.end


def first_local(series: Series) -> datetime:
    """The first slot's start on the series' local wall clock (aware)."""
    return series.start.astimezone(zone(series.time_zone))
