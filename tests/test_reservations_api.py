"""The reservations API: create, refuse with the message, edit, delete, list."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cpusched.apikeys import create_key
from cpusched.models import Revision
from reservations.models import Reservation

pytestmark = pytest.mark.django_db

URL = "/api/reservations"


@pytest.fixture
def client() -> Client:
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    _, secret = create_key(admin, "tests")
    return Client(HTTP_X_API_KEY=secret)


def soon(hours: float) -> str:
    base = datetime.fromtimestamp(int(time.time()) // 3600 * 3600, UTC)
    return (base + timedelta(days=2, hours=hours)).isoformat().replace("+00:00", "Z")


def body(**fields) -> dict:
    return {
        "name": "backup",
        "start_time": soon(2),
        "end_time": soon(4),
        "cpu_quota": 60.0,
        "description": "nightly backup",
        **fields,
    }


def send(client: Client, method: str, path: str, data: object):
    call = getattr(client, method)
    return call(path, json.dumps(data), content_type="application/json")


def messages_by_field(response) -> dict[str, str]:
    return {e["loc"][-1]: e["msg"] for e in response.json()["detail"]}


def test_a_reservation_is_created_and_listed_with_the_design_fields(client):
    revision = Revision.current("reservations")

    response = send(client, "post", URL, body())

    assert response.status_code == 201
    created = response.json()["reservation"]
    assert created["name"] == "backup"
    assert created["cpu_quota"] == 60.0
    assert created["is_active"] is False
    assert created["status"] == "future"
    assert created["created_by"] == "admin"
    assert response.json()["budget"]["cpu_s"] == pytest.approx(60 * 7200 / 100)
    assert Revision.current("reservations") == revision + 1

    listed = client.get(URL).json()["reservations"]
    assert [r["id"] for r in listed] == [created["id"]]
    assert set(listed[0]) >= {
        "id",
        "name",
        "start_time",
        "end_time",
        "cpu_quota",
        "description",
        "is_active",
    }


def test_a_refused_reservation_answers_422_naming_the_field(client):
    response = send(client, "post", URL, body(end_time=soon(1)))

    assert response.status_code == 422
    assert messages_by_field(response)["end_time"].startswith("End ")
    assert "must be after start" in messages_by_field(response)["end_time"]
    assert Reservation.objects.count() == 0


def test_an_overlap_is_refused_with_the_same_message_as_the_pages(client):
    send(client, "post", URL, body())

    response = send(client, "post", URL, body(name="report", start_time=soon(3)))

    assert response.status_code == 422
    message = messages_by_field(response)["start_time"]
    assert message.startswith("Overlaps 'backup' (priority 5) from ")
    assert "reservation.allow_overlap is off" in message


@pytest.mark.parametrize("year", [2028, 3000, 9999])
def test_a_start_beyond_the_horizon_is_a_422_naming_the_limit(client, year):
    now = int(time.time())
    limit = datetime.fromtimestamp(now + 366 * 86_400, UTC)
    start = f"{year}-12-31T10:00:00Z"

    response = send(
        client,
        "post",
        URL,
        body(start_time=start, end_time=start.replace("T10", "T11"), time_zone="UTC"),
    )

    assert response.status_code == 422
    message = messages_by_field(response)["start_time"]
    assert message.startswith(f"Starts on {year}-12-31, 366 days or more ahead: ")
    assert f"at most 366 days ahead (a slot must start before {limit:%Y-%m-%d}" in (
        message
    )
    assert Reservation.objects.count() == 0


def test_a_far_start_with_an_unknown_time_zone_is_a_422_not_a_500(client):
    start = "5820-03-13T05:32:40Z"

    response = send(
        client,
        "post",
        URL,
        body(
            start_time=start, end_time="5820-03-13T06:00:00Z", time_zone="\x0bNo/Where"
        ),
    )

    assert response.status_code == 422
    message = messages_by_field(response)["start_time"]
    assert message.startswith("Starts on 5820-03-13, 366 days or more ahead")
    assert Reservation.objects.count() == 0


def test_unknown_fields_are_refused(client):
    response = send(client, "post", URL, body(colour="red"))

    assert response.status_code == 422
    assert ["body", "body", "colour"] in [e["loc"] for e in response.json()["detail"]]


def test_a_percent_out_of_range_is_a_422_not_a_500(client):
    response = send(client, "post", URL, body(cpu_quota=150))

    assert response.status_code == 422
    assert "expected from 5 %" in messages_by_field(response)["cpu_quota"]


def test_patch_changes_only_the_given_fields(client):
    created = send(client, "post", URL, body()).json()["reservation"]

    response = send(client, "patch", f"{URL}/{created['id']}", {"cpu_quota": 40})

    assert response.status_code == 200
    changed = response.json()["reservation"]
    assert changed["cpu_quota"] == 40.0
    assert changed["name"] == "backup"
    assert changed["start_time"] == created["start_time"]


def test_put_replaces_the_reservation(client):
    created = send(client, "post", URL, body()).json()["reservation"]

    response = send(
        client,
        "put",
        f"{URL}/{created['id']}",
        body(name="renamed", start_time=soon(5), end_time=soon(6), priority=8),
    )

    assert response.status_code == 200
    changed = response.json()["reservation"]
    assert (changed["name"], changed["priority"]) == ("renamed", 8)


def test_a_patch_to_null_is_refused(client):
    created = send(client, "post", URL, body()).json()["reservation"]

    response = send(client, "patch", f"{URL}/{created['id']}", {"name": None})

    assert response.status_code == 422
    assert "May not be null" in messages_by_field(response)["name"]


def test_delete_removes_the_reservation(client):
    created = send(client, "post", URL, body()).json()["reservation"]

    response = client.delete(f"{URL}/{created['id']}")

    assert response.status_code == 204
    assert Reservation.objects.count() == 0
    assert client.delete(f"{URL}/{created['id']}").status_code == 404


def test_the_list_filters_by_status(client):
    send(client, "post", URL, body())
    Reservation.objects.create(
        name="old",
        start_time=datetime(2020, 1, 1, tzinfo=UTC),
        end_time=datetime(2020, 1, 1, 1, tzinfo=UTC),
        cpu_quota=20,
    )

    future = client.get(URL, {"status": "future"}).json()["reservations"]
    expired = client.get(URL, {"status": "expired"}).json()["reservations"]
    active = client.get(URL, {"status": "active"}).json()["reservations"]

    assert [r["name"] for r in future] == ["backup"]
    assert [r["name"] for r in expired] == ["old"]
    assert active == []


def test_a_naive_time_is_the_operators_wall_clock_and_a_gap_is_refused(
    client, settings
):
    response = send(
        client,
        "post",
        URL,
        body(
            start_time="2027-03-28T02:30:00",
            end_time="2027-03-28T03:30:00",
            time_zone="Europe/Berlin",
        ),
    )

    assert response.status_code == 422
    assert (
        "does not exist in Europe/Berlin" in messages_by_field(response)["start_time"]
    )


def test_occurrences_list_the_daylight_saving_notes(client):
    created = send(
        client,
        "post",
        URL,
        body(
            start_time=soon(0),
            end_time=soon(1),
            recurrence="FREQ=DAILY;COUNT=3",
            time_zone="UTC",
        ),
    ).json()["reservation"]

    found = client.get(f"{URL}/{created['id']}/occurrences").json()

    assert len(found) == 3
    assert all(o["note"] == "" for o in found)


def test_the_preview_reports_problems_without_saving(client):
    send(client, "post", URL, body())

    response = send(
        client, "post", f"{URL}/preview", body(name="other", start_time=soon(3))
    )

    assert response.status_code == 200
    answer = response.json()
    assert answer["ok"] is False
    assert "Overlaps 'backup'" in answer["errors"]["start_time"][0]
    assert Reservation.objects.count() == 1


def test_the_preview_of_a_good_reservation_has_the_forecast_with_and_without(client):
    response = send(client, "post", f"{URL}/preview", {**body(), "hours": 12})

    answer = response.json()
    assert answer["ok"] is True
    forecast = answer["forecast"]
    assert len(forecast["with"]) == len(forecast["without"]) == 12
    assert answer["budget"]["avg_budget_share"] > 0
