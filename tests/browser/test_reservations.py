"""Reservation pages in a real browser: create with live checks, refuse with
the message, move by dragging in the calendar (and a refused drag put back),
delete from the list.

The server runs in UTC (``server.time_zone`` default), so wall-clock times
on the pages are UTC too.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.browser


def day(offset: int) -> datetime:
    """Midnight UTC ``offset`` days from today."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=offset)


def create(
    server, name: str, start: datetime, hours: float = 1, cpu_quota: float = 40.0
) -> str:
    """Store a reservation through the service on the server; return its id."""
    end = start + timedelta(hours=hours)
    code = (
        "from datetime import datetime; from reservations import service; "
        f"r, _ = service.save(service.Draft(name={name!r}, "
        f"start_time=datetime.fromisoformat({start.isoformat()!r}), "
        f"end_time=datetime.fromisoformat({end.isoformat()!r}), "
        f"cpu_quota={cpu_quota!r})); print(r.id)"
    )
    return server.shell(code).strip().splitlines()[-1]


def reservation(server, pk: str) -> dict | None:
    code = (
        "import json; from reservations.models import Reservation as R; "
        f"r = R.objects.filter(id={pk!r}).first(); "
        "print(json.dumps(None if r is None else "
        "{'start': r.start_time.isoformat(), 'end': r.end_time.isoformat(), "
        "'name': r.name}))"
    )
    return json.loads(server.shell(code).strip().splitlines()[-1])


@pytest.fixture
def clean(server):
    """No reservations before and after each test."""
    wipe = (
        "from reservations.models import Reservation; "
        "Reservation.objects.all().delete()"
    )
    server.shell(wipe)
    yield
    server.shell(wipe)


def local_input(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def test_a_reservation_is_created_with_live_checks_and_a_preview(
    page, login, clean, artifacts
):
    start = day(2) + timedelta(hours=10)
    login(page)
    page.goto("/reservations/new/")

    page.fill("#id_name", "nightly backup")
    page.fill("#id_start_time", local_input(start))
    page.fill("#id_end_time", local_input(start + timedelta(hours=2)))
    page.fill("#id_cpu_quota", "60")
    page.wait_for_selector("#check-ok")
    page.wait_for_function(
        "() => !!Chart.getChart(document.getElementById('preview-chart'))"
    )
    page.screenshot(path=str(artifacts / "reservation-form.png"), full_page=True)
    page.click("#save-reservation")

    page.wait_for_url("**/reservations/")
    assert "Reservation 'nightly backup' created" in page.text_content("#messages")
    row = page.locator("#reservations tbody tr", has_text="nightly backup")
    assert "60 %" in row.text_content()
    assert "future" in row.text_content()


def test_an_overlap_is_refused_with_the_message_live_and_on_save(
    page, login, server, clean, artifacts
):
    start = day(2) + timedelta(hours=10)
    create(server, "backup", start, hours=2)
    login(page)
    page.goto("/reservations/new/")

    page.fill("#id_name", "report")
    page.fill("#id_start_time", local_input(start + timedelta(hours=1)))
    page.fill("#id_end_time", local_input(start + timedelta(hours=3)))
    page.fill("#id_cpu_quota", "30")
    live = page.wait_for_selector("#check-problems:has-text('Overlaps')")
    assert "Overlaps 'backup' (priority 5)" in live.text_content()
    page.click("#save-reservation")

    page.wait_for_selector(".field-error")
    errors = page.text_content("#wrap-start_time")
    page.screenshot(path=str(artifacts / "reservation-refused.png"), full_page=True)
    assert "Overlaps 'backup' (priority 5)" in errors
    assert "reservation.allow_overlap is off" in errors


def drag(page, source, target) -> None:
    """Press on ``source``, move in steps onto ``target`` and release."""
    a = source.bounding_box()
    b = target.bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(a["x"] + a["width"] / 2 + 5, a["y"] + a["height"] / 2 + 5, steps=3)
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=15)
    page.mouse.up()


def open_calendar(page, login, when: datetime) -> None:
    login(page)
    page.goto("/reservations/calendar/")
    page.wait_for_function("() => !!window.cpusched.reservationCalendar")
    page.evaluate(f"window.cpusched.reservationCalendar.gotoDate('{when:%Y-%m-%d}')")


def test_dragging_a_slot_in_the_calendar_moves_the_reservation(
    page, login, server, clean, artifacts
):
    start = day(3) + timedelta(hours=10)
    pk = create(server, "backup", start)
    open_calendar(page, login, start)

    event = page.locator(f".fc-event[data-reservation='{pk}']").first
    event.wait_for()
    target = page.locator(
        f"td.fc-daygrid-day[data-date='{start + timedelta(days=1):%Y-%m-%d}']"
    )
    drag(page, event, target)

    page.wait_for_selector("#calendar-message.alert-success")
    page.screenshot(path=str(artifacts / "reservation-calendar.png"), full_page=True)
    moved = reservation(server, pk)
    assert datetime.fromisoformat(moved["start"]) == start + timedelta(days=1)
    assert datetime.fromisoformat(moved["end"]) == start + timedelta(days=1, hours=1)


def test_a_drag_the_rules_refuse_is_put_back_with_the_reason(
    page, login, server, clean
):
    start = day(3) + timedelta(hours=10)
    create(server, "backup", start + timedelta(days=1))
    pk = create(server, "report", start)
    open_calendar(page, login, start)

    event = page.locator(f".fc-event[data-reservation='{pk}']").first
    event.wait_for()
    target = page.locator(
        f"td.fc-daygrid-day[data-date='{start + timedelta(days=1):%Y-%m-%d}']"
    )
    drag(page, event, target)

    message = page.wait_for_selector("#calendar-message.alert-danger")
    assert message.text_content().startswith("Not moved: Overlaps 'backup'")
    home = f"td.fc-daygrid-day[data-date='{start:%Y-%m-%d}']"
    page.wait_for_selector(f"{home} .fc-event[data-reservation='{pk}']")
    unchanged = reservation(server, pk)
    assert datetime.fromisoformat(unchanged["start"]) == start


def test_clicking_a_day_starts_a_new_reservation_on_that_day(page, login, clean):
    when = day(4)
    open_calendar(page, login, when)

    page.click(f"td.fc-daygrid-day[data-date='{when:%Y-%m-%d}'] .fc-daygrid-day-frame")

    page.wait_for_url("**/reservations/new/**")
    assert page.input_value("#id_start_time") == f"{when:%Y-%m-%d}T09:00"


def test_a_reservation_is_deleted_from_the_list(page, login, server, clean):
    pk = create(server, "old job", day(2) + timedelta(hours=8))
    login(page)
    page.goto("/reservations/")
    row = page.locator(f"#row-{pk}")
    row.wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator(".reservation-delete").click()

    row.wait_for(state="detached")
    deadline = time.monotonic() + 5
    while reservation(server, pk) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reservation(server, pk) is None


def test_the_analysis_page_draws_use_against_reservations(
    page, login, server, clean, artifacts
):
    create(server, "backup", day(1) + timedelta(hours=3))
    login(page)

    page.goto("/reservations/analysis/?days=7")

    page.wait_for_function(
        "() => !!Chart.getChart(document.getElementById('analysis-chart'))"
    )
    page.screenshot(path=str(artifacts / "reservation-analysis.png"), full_page=True)
    assert "backup" in page.text_content("#analysis-coming")
