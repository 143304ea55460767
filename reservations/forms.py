"""Forms of the reservation pages and the admin, checked by the service.

Both forms turn their fields into a :class:`~reservations.service.Draft` and
run :func:`~reservations.service.review`, so they refuse exactly what the API
refuses, with the same messages, each shown at the field it concerns.
Date-time inputs are the operator's wall clock (``server.time_zone``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from cpusched.models import Revision
from reservations import service
from reservations.models import Reservation
from reservations.recurrence import WEEKDAYS, RecurrenceError, Rule, parse_rule
from reservations.service import Draft, Report

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
INPUT_FORMAT = "%Y-%m-%dT%H:%M"


class LocalDateTimeField(forms.DateTimeField):
    """A ``datetime-local`` input read on the operator's wall clock.

    An ambiguous time (the hour the clocks go back) takes the first instant
    and leaves a note; a nonexistent one (the hour they go forward) is
    refused with a message, never moved silently.
    """

    widget = forms.DateTimeInput(
        attrs={"type": "datetime-local", "step": 60}, format=INPUT_FORMAT
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.note = ""

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            naive = value
        else:
            try:
                naive = datetime.fromisoformat(str(value).strip())
            except ValueError:
                raise ValidationError(
                    f"{value!r} is not a date and time: expected YYYY-MM-DDTHH:MM",
                    code="invalid",
                ) from None
        try:
            instant, self.note = service.to_instant(naive)
        except ValueError as exc:
            raise ValidationError(str(exc), code="nonexistent") from None
        return instant


class ReviewedForm(forms.ModelForm):
    """A reservation form whose clean step runs the service's review."""

    review_on_clean = True

    class Meta:
        model = Reservation
        fields = [
            "name",
            "description",
            "start_time",
            "end_time",
            "cpu_quota",
            "priority",
            "enabled",
        ]

    def __init__(self, *args: Any, review: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.review_on_clean = review
        self.report: Report | None = None
        self.revision = 0
        self.draft: Draft | None = None

    def recurrence_text(self) -> str:
        return self.cleaned_data.get("recurrence", "") or ""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        self.draft = self.make_draft(data)
        if self.review_on_clean:
            self.revision = Revision.current(service.REVISION)
            original = None if self.instance._state.adding else self.instance
            self.report = service.review(self.draft, original=original)
            for problem in self.report.problems:
                self.add_error(self.field_for(problem.field), problem.message)
        return data

    def make_draft(self, data: dict[str, Any]) -> Draft:
        instance = self.instance
        values = {
            "name": data["name"],
            "description": data.get("description", ""),
            "start_time": data["start_time"],
            "end_time": data["end_time"],
            "cpu_quota": data["cpu_quota"],
            "priority": data["priority"],
            "enabled": data.get("enabled", False),
            "recurrence": self.recurrence_text(),
            "time_zone": instance.time_zone or settings.TIME_ZONE,
        }
        if not instance._state.adding:
            return Draft.of(instance, **values)
        return Draft(**values)

    def field_for(self, name: str) -> str | None:
        return name if name in self.fields else None

    def notes(self) -> list[str]:
        found = []
        for name in ("start_time", "end_time"):
            field = self.fields.get(name)
            if isinstance(field, LocalDateTimeField) and field.note:
                found.append(field.note)
        return found

    def save_reviewed(self, user: str) -> tuple[Reservation, Report]:
        """Store the reviewed draft (raises ReservationError when refused)."""
        assert self.draft is not None
        reviewed = (self.report, self.revision) if self.report else None
        return service.save(self.draft, user, reviewed=reviewed)


class ReservationForm(ReviewedForm):
    """The page form: a repeat rule made of simple choices."""

    start_time = LocalDateTimeField(label="Start")
    end_time = LocalDateTimeField(label="End")
    cpu_quota = forms.FloatField(
        label="CPU (%)",
        widget=forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "100"}),
    )
    priority = forms.TypedChoiceField(
        coerce=int,
        choices=[(n, str(n)) for n in range(10, 0, -1)],
        initial=5,
        help_text="10 is the highest",
    )
    repeat = forms.ChoiceField(
        choices=[
            ("", "Once"),
            ("DAILY", "Daily"),
            ("WEEKLY", "Weekly"),
            ("MONTHLY", "Monthly (same day of the month)"),
        ],
        required=False,
    )
    interval = forms.IntegerField(
        min_value=1, max_value=366, initial=1, required=False, label="Every"
    )
    weekdays = forms.MultipleChoiceField(
        choices=list(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="On",
    )
    ends = forms.ChoiceField(
        choices=[("never", "Never"), ("until", "On date"), ("count", "After")],
        initial="never",
        required=False,
    )
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    count = forms.IntegerField(
        min_value=1, max_value=10_000, required=False, label="Occurrences"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["description"].widget.attrs["rows"] = 2
        for field in self.fields.values():
            field.widget.attrs.setdefault("class", _css(field.widget))
        rule = _stored_rule(self.instance)
        if rule is not None and not self.is_bound:
            self.initial.update(_rule_initial(rule))

    def field_for(self, name: str) -> str | None:
        if name == "recurrence":
            return "repeat"
        return super().field_for(name)

    def recurrence_text(self) -> str:
        data = self.cleaned_data
        freq = data.get("repeat") or ""
        if not freq:
            return ""
        parts = [f"FREQ={freq}"]
        interval = data.get("interval") or 1
        if interval != 1:
            parts.append(f"INTERVAL={interval}")
        if freq == "WEEKLY" and data.get("weekdays"):
            parts.append("BYDAY=" + ",".join(data["weekdays"]))
        ends = data.get("ends") or "never"
        if ends == "until" and data.get("until"):
            parts.append(f"UNTIL={data['until']:%Y%m%d}")
        if ends == "count" and data.get("count"):
            parts.append(f"COUNT={data['count']}")
        return ";".join(parts)

    def clean(self) -> dict[str, Any]:
        data = self.cleaned_data
        ends = data.get("ends") or "never"
        if data.get("repeat") and ends == "until" and not data.get("until"):
            self.add_error("until", "Give the last date, or choose another end")
        if data.get("repeat") and ends == "count" and not data.get("count"):
            self.add_error("count", "Give how many times, or choose another end")
        return super().clean()


def _css(widget: forms.Widget) -> str:
    if isinstance(widget, forms.CheckboxSelectMultiple):
        return "form-check-input"
    if isinstance(widget, forms.CheckboxInput):
        return "form-check-input"
    if isinstance(widget, forms.Select):
        return "form-select form-select-sm"
    return "form-control form-control-sm"


def _stored_rule(instance: Reservation) -> Rule | None:
    try:
        return parse_rule(instance.recurrence or "")
    except RecurrenceError:
        return None


def _rule_initial(rule: Rule) -> dict[str, Any]:
    initial: dict[str, Any] = {
        "repeat": rule.freq,
        "interval": rule.interval,
        "weekdays": list(rule.weekdays),
        "ends": "never",
    }
    if rule.count is not None:
        initial.update(ends="count", count=rule.count)
    if rule.until is not None:
        initial.update(ends="until", until=_until_date(rule.until))
    return initial


def _until_date(until: str) -> date:
    return datetime.strptime(until[:8], "%Y%m%d").date()


class AdminForm(ReviewedForm):
    """The admin's form: every stored field, the rule as RRULE text."""

    class Meta(ReviewedForm.Meta):
        fields = [*ReviewedForm.Meta.fields, "recurrence"]

    def recurrence_text(self) -> str:
        return self.cleaned_data.get("recurrence", "") or ""
