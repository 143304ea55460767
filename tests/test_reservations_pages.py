"""The reservation pages: list, form with live checks, calendar, analysis, admin."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from monitoring.models import Sample
from reservations import service
from reservations.models import Reservation
from reservations.service import Draft

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def client() -> Client:
    user = User.objects.create_superuser("operator", "op@example.com", "pw-op-1")
    client = Client()
    client.force_login(user)
    return client


def base() -> datetime:
    """The start of the hour two days from now (UTC)."""
    hour = int(time.time()) // 3600 * 3600
    return datetime.fromtimestamp(hour, UTC) + timedelta(days=2)


def stored(name: str = "backup", hours: float = 2, **fields) -> Reservation:
    start = base() + timedelta(hours=hours)
    fields.setdefault("cpu_quota", 50.0)
    reservation, _ = service.save(
        Draft(
            name=name, start_time=start, end_time=start + timedelta(hours=1), **fields
        )
    )
    return reservation


def wall(moment: datetime) -> str:
    return moment.astimezone(service.local(0).tzinfo).strftime("%Y-%m-%dT%H:%M")


def form_data(**fields) -> dict:
    start = base() + timedelta(hours=2)
    return {
        "name": "backup",
        "description": "",
        "start_time": wall(start),
        "end_time": wall(start + timedelta(hours=1)),
        "cpu_quota": "60",
        "priority": "5",
        "enabled": "on",
        "repeat": "",
        "interval": "1",
        "ends": "never",
        **fields,
    }


def test_the_list_shows_reservations_with_status_and_toggle(client):
    stored("backup")

    page = client.get("/reservations/").content.decode()

    assert "backup" in page
    assert 'badge text-bg-primary">future' in page
    assert 'hx-post="/reservations/' in page


def test_the_list_filters_by_status_in_place(client):
    stored("backup")

    table = client.get(
        "/reservations/",
        {"status": "expired"},
        HTTP_HX_TARGET="reservation-table",
        **HTMX,
    ).content.decode()

    assert "<html" not in table
    assert "No reservations expired" in table


def test_the_form_creates_a_reservation_in_the_operators_time(client, settings):
    settings.TIME_ZONE = "Europe/Berlin"

    response = client.post(
        "/reservations/new/",
        form_data(start_time="2027-07-01T10:00", end_time="2027-07-01T11:30"),
    )

    assert response.status_code == 302
    saved = Reservation.objects.get()
    assert saved.start_time == datetime(2027, 7, 1, 8, 0, tzinfo=UTC)
    assert saved.end_time == datetime(2027, 7, 1, 9, 30, tzinfo=UTC)
    assert saved.time_zone == "Europe/Berlin"
    assert saved.created_by == "operator"


def test_the_form_builds_a_weekly_rule_from_its_choices(client, settings):
    settings.TIME_ZONE = "UTC"
    # 5 July 2027 is a Monday.
    data = form_data(
        start_time="2027-07-05T02:00",
        end_time="2027-07-05T03:00",
        repeat="WEEKLY",
        weekdays=["MO", "TH"],
        ends="count",
        count="8",
    )

    assert client.post("/reservations/new/", data).status_code == 302

    assert Reservation.objects.get().recurrence == "FREQ=WEEKLY;BYDAY=MO,TH;COUNT=8"


def test_a_new_reservation_form_has_no_id_to_check_against(client):
    page = client.get("/reservations/new/").content.decode()

    assert 'name="id"' not in page
    assert 'id="reservation-form"' in page


def test_the_form_refuses_with_the_message_at_the_field(client):
    stored("backup", hours=2)

    response = client.post("/reservations/new/", form_data(name="other"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Overlaps &#x27;backup&#x27; (priority 5)" in page
    assert Reservation.objects.count() == 1


def test_the_form_refuses_a_nonexistent_local_time(client, settings):
    settings.TIME_ZONE = "Europe/Berlin"

    response = client.post(
        "/reservations/new/",
        form_data(start_time="2027-03-28T02:30", end_time="2027-03-28T03:30"),
    )

    assert "2027-03-28 02:30 does not exist in Europe/Berlin" in (
        response.content.decode()
    )


def test_the_live_check_shows_conflicts_as_the_user_types(client):
    stored("backup", hours=2)

    feedback = client.post(
        "/reservations/check/", form_data(name="other"), **HTMX
    ).content.decode()

    assert 'id="check-problems"' in feedback
    assert "Overlaps &#x27;backup&#x27;" in feedback


def test_the_live_check_of_a_good_reservation_has_the_preview_chart(client):
    feedback = client.post("/reservations/check/", form_data(), **HTMX).content.decode()

    assert 'id="check-ok"' in feedback
    assert 'id="preview-chart"' in feedback
    assert 'id="preview-data"' in feedback
    assert "Share of the average budget" in feedback


def test_the_live_check_of_an_edit_ignores_the_reservation_itself(client):
    reservation = stored("backup", hours=2)

    feedback = client.post(
        "/reservations/check/", {**form_data(), "id": str(reservation.id)}, **HTMX
    ).content.decode()

    assert 'id="check-ok"' in feedback


def test_editing_keeps_the_rule_choices(client):
    reservation = stored("backup", recurrence="FREQ=DAILY;COUNT=4")

    page = client.get(f"/reservations/{reservation.id}/edit/").content.decode()

    assert '<option value="DAILY" selected>' in page
    assert 'name="count" value="4"' in page


def test_the_toggle_disables_and_answers_with_the_row(client):
    reservation = stored("backup")

    row = client.post(
        f"/reservations/{reservation.id}/toggle/", **HTMX
    ).content.decode()

    reservation.refresh_from_db()
    assert reservation.enabled is False
    assert row.startswith(f'\n<tr id="row-{reservation.id}"') or "<tr" in row


def test_enabling_a_conflicting_reservation_is_refused_in_the_row(client):
    stored("backup", hours=2)
    other = stored("other", hours=2.5, enabled=False)

    row = client.post(f"/reservations/{other.id}/toggle/", **HTMX).content.decode()

    other.refresh_from_db()
    assert other.enabled is False
    assert "reservation-error" in row
    assert "Overlaps &#x27;backup&#x27;" in row


def test_delete_removes_the_row(client):
    reservation = stored("backup")

    response = client.post(f"/reservations/{reservation.id}/delete/", **HTMX)

    assert response.content == b""
    assert not Reservation.objects.exists()


def test_calendar_events_are_wall_clock_slots_with_a_colour_each(client, settings):
    settings.TIME_ZONE = "UTC"
    first = stored("a", hours=2, recurrence="FREQ=DAILY;COUNT=2")
    stored("b", hours=5)
    start = base().date().isoformat()
    end = (base() + timedelta(days=3)).date().isoformat()

    events = client.get("/reservations/calendar/events/", {"start": start, "end": end})

    found = events.json()
    assert [e["title"] for e in found] == ["a 50 %", "a 50 %", "b 50 %"]
    assert found[0]["start"] == (base() + timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    assert found[0]["color"] != found[2]["color"]
    assert found[0]["extendedProps"]["reservation"] == str(first.id)


def test_dragging_a_slot_moves_the_reservation(client):
    reservation = stored("backup", hours=2)

    response = client.post(
        f"/reservations/{reservation.id}/move/",
        json.dumps({"start_delta_ms": 86_400_000, "end_delta_ms": 86_400_000}),
        content_type="application/json",
    )

    assert response.json() == {"ok": True, "notices": []}
    reservation.refresh_from_db()
    assert reservation.start_time == base() + timedelta(days=1, hours=2)
    assert reservation.end_time == base() + timedelta(days=1, hours=3)


def test_a_drag_the_rules_refuse_is_answered_with_the_message(client):
    stored("backup", hours=2)
    other = stored("other", hours=26)

    response = client.post(
        f"/reservations/{other.id}/move/",
        json.dumps({"start_delta_ms": -86_400_000, "end_delta_ms": -86_400_000}),
        content_type="application/json",
    )

    assert response.status_code == 422
    assert response.json()["message"].startswith("Overlaps 'backup' (priority 5)")
    other.refresh_from_db()
    assert other.start_time == base() + timedelta(hours=26)


def test_resizing_a_slot_changes_its_end(client):
    reservation = stored("backup", hours=2)

    client.post(
        f"/reservations/{reservation.id}/move/",
        json.dumps({"start_delta_ms": 0, "end_delta_ms": 1_800_000}),
        content_type="application/json",
    )

    reservation.refresh_from_db()
    assert reservation.duration_s == 5400


def test_the_analysis_compares_slots_with_the_usage_of_those_hours(client):
    now = int(time.time())
    start = now - 2 * 3600
    Reservation.objects.create(
        name="past",
        start_time=datetime.fromtimestamp(start, UTC),
        end_time=datetime.fromtimestamp(start + 600, UTC),
        cpu_quota=40,
    )
    Sample.objects.bulk_create(
        Sample(timestamp=datetime.fromtimestamp(start + i, UTC), cpu_usage=20.0)
        for i in range(600)
    )

    page = client.get("/reservations/analysis/", {"days": 1}).content.decode()

    assert "past" in page
    assert "20.0 %" in page
    assert 'id="analysis-data"' in page


def test_the_admin_refuses_with_the_same_validation(client):
    stored("backup", hours=2)
    start = base() + timedelta(hours=2)
    local = start.astimezone(service.local(0).tzinfo)

    response = client.post(
        "/admin/reservations/reservation/add/",
        {
            "name": "other",
            "description": "",
            "start_time_0": local.strftime("%Y-%m-%d"),
            "start_time_1": local.strftime("%H:%M:%S"),
            "end_time_0": local.strftime("%Y-%m-%d"),
            "end_time_1": (local + timedelta(hours=1)).strftime("%H:%M:%S"),
            "cpu_quota": "30",
            "priority": "5",
            "enabled": "on",
            "recurrence": "",
        },
    )

    assert response.status_code == 200
    assert "Overlaps &#x27;backup&#x27;" in response.content.decode()
    assert Reservation.objects.count() == 1


def test_the_admin_adds_a_valid_reservation_through_the_service(client):
    start = (base() + timedelta(hours=8)).astimezone(service.local(0).tzinfo)

    response = client.post(
        "/admin/reservations/reservation/add/",
        {
            "name": "admin-made",
            "description": "",
            "start_time_0": start.strftime("%Y-%m-%d"),
            "start_time_1": start.strftime("%H:%M:%S"),
            "end_time_0": start.strftime("%Y-%m-%d"),
            "end_time_1": (start + timedelta(minutes=30)).strftime("%H:%M:%S"),
            "cpu_quota": "30",
            "priority": "5",
            "enabled": "on",
            "recurrence": "freq=daily;count=2",
        },
    )

    assert response.status_code == 302
    saved = Reservation.objects.get()
    assert saved.recurrence == "FREQ=DAILY;COUNT=2"
    assert saved.created_by == "operator"
